"""Refunds: the order's points are reversed proportionally, exactly once per refund id.

Policy (docs/points-ledger.md): the reversal takes the order's own lot first (still
pending inside the return window, or available), then other available lots
(FIFO); what was already spent becomes a debt, shown as a negative available
balance, that later credits repay first. Redemptions are refused while in debt.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.replays import stored_answer
from points import events
from points.client_times import TimeBounds, out_of_bounds
from points.errors import IdempotencyConflict, OrderNotFound, RefundExceedsOrder
from points.ledger import models as lm
from points.ledger import service as ledger
from points.ledger.models import entries, lots
from points.ledger.schemas import BalanceAfter
from points.orders.models import orders
from points.refunds.models import refunds
from points.refunds.schemas import RefundIn, RefundOut
from points.settings import PointsSettings


def refund_fingerprint(order_id: str, data: RefundIn) -> str:
    payload = {"order_id": order_id, **data.model_dump(mode="json", exclude={"occurred_at"})}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_refund_time(
    bounds: TimeBounds, at: datetime, order_at: datetime, now: datetime, *, history: bool = False
) -> None:
    """A refund's given time: bounded like every client-given time, and not before its order
    (a reversal dated out of the growth window would leave the member's tier untouched).
    ``history`` (the history import): any past time, only not ahead of the clock."""
    if history:
        bounds.check_not_ahead(at, now)
    else:
        bounds.check(at, now)
    if at < order_at:
        raise out_of_bounds("before_order", f"is before the order ({order_at.isoformat()})")


def reversed_through(points_earned: int, order_amount: Decimal, refunded: Decimal) -> int:
    """Points reversed once ``refunded`` of the order is refunded (cumulative, rounded down)."""
    share = points_earned * refunded / order_amount
    return int(share.to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True)
class _Refunded:
    """The refund's amounts: before it, with it, and the points it reverses."""

    before: Decimal  # refunded before this refund
    reversed_before: int  # points reversed before this refund
    total: Decimal  # refunded with this refund
    points: int  # points this refund reverses


@dataclass
class _Reversal:
    """Where the reversed points came from."""

    from_pending: int = 0
    from_available: int = 0
    debt_added: int = 0
    waived: int = 0  # already expired: counted as reversed, not taken again


async def refund_order(
    session: AsyncSession,
    settings: PointsSettings,
    order_id: str,
    data: RefundIn,
    *,
    now: datetime | None = None,
    history: bool = False,
) -> RefundOut:
    """``history``: a refund from the history import (``occurred_at`` any past time)."""
    now = now or datetime.now(UTC)
    occurred_at = data.occurred_at or now
    fingerprint = refund_fingerprint(order_id, data)
    order = await _order(session, order_id)
    if data.occurred_at is not None:
        check_refund_time(
            TimeBounds.of(settings), data.occurred_at, order.occurred_at, now, history=history
        )
    locked = await ledger.lock_member(session, order.member_id)

    previous = await _existing(session, data.refund_id, fingerprint)
    if previous is not None:
        return previous
    refunded = await _amounts(session, order_id, order, data)
    if not await _claim(
        session, order_id, order.member_id, data, refunded, fingerprint, occurred_at
    ):
        # the same refund id raced in for another order's member
        replay = await _existing(session, data.refund_id, fingerprint)
        assert replay is not None
        return replay

    posting = ledger.Posting(
        session,
        locked,
        "refund",
        data.refund_id,
        occurred_at,
        reason=data.reason or f"refund of order {order_id}",
    )
    reversal = await _reverse(session, posting, order_id, data.refund_id, refunded)
    # growth value falls pro rata with the part of the order that counted toward it
    growth = reversed_through(order.growth_points, order.amount, refunded.total) - (
        reversed_through(order.growth_points, order.amount, refunded.before)
    )
    posting.take_growth(growth, lm.REFUND_REVERSAL, key=f"refund:{data.refund_id}:growth")
    balance = await posting.finish()

    response = RefundOut(
        refund_id=data.refund_id,
        order_id=order_id,
        member_id=order.member_id,
        amount=data.amount,
        refunded_total=refunded.total,
        points_reversed=refunded.points,
        reversed_from_pending=reversal.from_pending,
        reversed_from_available=reversal.from_available,
        debt_added=reversal.debt_added,
        already_expired=reversal.waived,
        balance=BalanceAfter(
            available=balance.available, pending=balance.pending, debt=balance.debt
        ),
        occurred_at=occurred_at,
    )
    await session.execute(
        update(refunds)
        .where(refunds.c.refund_id == data.refund_id)
        .values(response=response.model_dump(mode="json"))
    )
    await _publish(session, order, response)
    return response


async def _order(session: AsyncSession, order_id: str) -> Any:
    """The refunded order's row (404 for an unknown order id)."""
    order = (
        await session.execute(
            select(
                orders.c.member_id,
                orders.c.amount,
                orders.c.points_earned,
                orders.c.growth_points,
                orders.c.currency,
                orders.c.occurred_at,
            ).where(orders.c.order_id == order_id)
        )
    ).first()
    if order is None:
        raise OrderNotFound(f"No order with id {order_id!r}", order_id=order_id)
    return order


async def _amounts(session: AsyncSession, order_id: str, order: Any, data: RefundIn) -> _Refunded:
    """What was refunded before, and what this refund reverses (422 above the order)."""
    totals = (
        await session.execute(
            select(
                func.coalesce(func.sum(refunds.c.amount), 0),
                func.coalesce(func.sum(refunds.c.points_reversed), 0),
            ).where(refunds.c.order_id == order_id)
        )
    ).one()
    refunded_before, reversed_before = Decimal(totals[0]), int(totals[1])
    refunded_total = refunded_before + data.amount
    if refunded_total > order.amount:
        raise RefundExceedsOrder(
            f"Refunds of order {order_id!r} would total {refunded_total}, "
            f"above the order amount {order.amount}",
            errors=[
                {
                    "field": "body.amount",
                    "message": f"at most {order.amount - refunded_before} can still be refunded",
                }
            ],
        )
    points = reversed_through(order.points_earned, order.amount, refunded_total) - reversed_before
    return _Refunded(refunded_before, reversed_before, refunded_total, points)


async def _claim(
    session: AsyncSession,
    order_id: str,
    member_id: str,
    data: RefundIn,
    refunded: _Refunded,
    fingerprint: str,
    occurred_at: datetime,
) -> bool:
    """The refund's row, if its id is new (its answer is written once it is known)."""
    claimed = (
        await session.execute(
            insert(refunds)
            .values(
                refund_id=data.refund_id,
                order_id=order_id,
                member_id=member_id,
                amount=data.amount,
                points_reversed=refunded.points,
                request_hash=fingerprint,
                response={},
                occurred_at=occurred_at,
            )
            .on_conflict_do_nothing(index_elements=[refunds.c.refund_id])
            .returning(refunds.c.refund_id)
        )
    ).first()
    return claimed is not None


async def _reverse(
    session: AsyncSession,
    posting: ledger.Posting,
    order_id: str,
    refund_id: str,
    refunded: _Refunded,
) -> _Reversal:
    """Take the refund's points: the order's own lots first (pending before available),
    then what already expired, then other lots (FIFO); the rest becomes a debt."""
    reversal = _Reversal()
    left = refunded.points
    if left <= 0:
        return reversal
    order_lots = (
        await session.execute(
            select(lots.c.id, lots.c.remaining, lots.c.status)
            .where(
                lots.c.source_type == "order",
                lots.c.source_id == order_id,
                lots.c.member_id == posting.member_id,
                lots.c.remaining > 0,
                lots.c.status.in_([lm.LOT_PENDING, lm.LOT_AVAILABLE]),
            )
            .order_by(lots.c.status.desc(), lots.c.id)  # pending before available
        )
    ).all()
    for lot in order_lots:
        take = min(left, lot.remaining)
        key = f"refund:{refund_id}:order-lot:{lot.id}"
        if lot.status == lm.LOT_PENDING:
            posting.entry(lm.REFUND_REVERSAL, key, pending=-take, lot_id=lot.id)
            reversal.from_pending += take
        else:
            posting.entry(lm.REFUND_REVERSAL, key, points=-take, lot_id=lot.id)
            reversal.from_available += take
        left -= take
        if left == 0:
            break
    if left > 0:
        waived = await _expired_not_yet_waived(session, order_id, refunded.reversed_before)
        reversal.waived = min(left, waived)
        left -= reversal.waived
    if left > 0:
        taken, reversal.debt_added = await posting.claw_back(left, key=f"refund:{refund_id}:claw")
        reversal.from_available += taken
    posting.lower_lifetime(refunded.points)
    return reversal


async def _publish(session: AsyncSession, order: Any, out: RefundOut) -> None:
    """``order.refunded`` and ``points.reversed``."""
    occurred_at = out.occurred_at
    await events.publish(
        session,
        events.points_event(
            events.ORDER_REFUNDED,
            out.member_id,
            {
                "order_id": out.order_id,
                "refund_id": out.refund_id,
                "member_id": out.member_id,
                "amount": str(out.amount),
                "currency": order.currency,
                "order_amount": str(order.amount),
                "refunded_total": str(out.refunded_total),
                "fully_refunded": out.refunded_total == order.amount,
                "points_reversed": out.points_reversed,
                "occurred_at": occurred_at.isoformat(),
            },
            time=occurred_at,
        ),
        events.points_event(
            events.POINTS_REVERSED,
            out.member_id,
            {
                "member_id": out.member_id,
                "points": out.points_reversed,
                "from_pending": out.reversed_from_pending,
                "from_available": out.reversed_from_available,
                "debt_added": out.debt_added,
                "already_expired": out.already_expired,
                "source_type": "refund",
                "source_id": out.refund_id,
                "order_id": out.order_id,
                "occurred_at": occurred_at.isoformat(),
                "balance_available": out.balance.available,
                "balance_pending": out.balance.pending,
                "debt": out.balance.debt,
            },
            time=occurred_at,
        ),
    )


async def _expired_not_yet_waived(
    session: AsyncSession, order_id: str, reversed_before: int
) -> int:
    """Points of the order's lots that expired and no earlier refund has counted yet.

    Those points are gone already: a refund counts them as reversed instead of taking
    them a second time from the member's other lots (or as debt).
    """
    order_lot_ids = select(lots.c.id).where(
        lots.c.source_type == "order", lots.c.source_id == order_id
    )
    expired = (
        await session.execute(
            select(func.coalesce(-func.sum(entries.c.points), 0)).where(
                entries.c.entry_type == lm.EXPIRE, entries.c.lot_id.in_(order_lot_ids)
            )
        )
    ).scalar_one()
    taken_before = (
        await session.execute(
            select(func.coalesce(-func.sum(entries.c.points + entries.c.pending_delta), 0)).where(
                entries.c.source_type == "refund",
                entries.c.source_id.in_(
                    select(refunds.c.refund_id).where(refunds.c.order_id == order_id)
                ),
            )
        )
    ).scalar_one()
    waived_before = reversed_before - int(taken_before)
    return max(int(expired) - waived_before, 0)


async def _existing(session: AsyncSession, refund_id: str, fingerprint: str) -> RefundOut | None:
    """The stored answer for a refund id sent before (409 for another body); None if new."""
    return await stored_answer(
        session,
        refunds.c.refund_id == refund_id,
        refunds,
        fingerprint,
        RefundOut,
        lambda: IdempotencyConflict(
            f"Refund {refund_id!r} was already recorded with a different body",
            refund_id=refund_id,
        ),
    )
