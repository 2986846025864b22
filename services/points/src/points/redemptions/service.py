"""Redemptions: spend points on a catalogue reward (with stock) or as an order discount.

Locks: the member's balance row first, then the reward row (a conditional
``UPDATE rewards SET stock = stock - q WHERE stock >= q``), always in that order.
"""

import uuid
from datetime import UTC, datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from points import events
from points.errors import (
    InsufficientPoints,
    OutOfStock,
    PointsInDebt,
    RedemptionNotFound,
    RewardNotFound,
)
from points.ledger import models as lm
from points.ledger import service as ledger
from points.ledger.models import entries, lots
from points.ledger.schemas import BalanceAfter
from points.privacy.service import lock_live_member
from points.redemptions.models import redemptions, rewards
from points.redemptions.schemas import CancelOut, RedemptionIn, RedemptionLot, RedemptionOut
from points.settings import PointsSettings

COMPLETED = "completed"
CANCELLED = "cancelled"


def _balance(b: ledger.BalanceNow) -> BalanceAfter:
    return BalanceAfter(available=b.available, pending=b.pending, debt=b.debt)


async def redeem(
    session: AsyncSession,
    settings: PointsSettings,
    member_id: str,
    data: RedemptionIn,
    *,
    now: datetime | None = None,
) -> RedemptionOut:
    now = now or datetime.now(UTC)
    locked = await lock_live_member(session, member_id)  # an erased member: 404
    if locked.debt > 0:
        raise PointsInDebt(
            f"Member {member_id!r} owes {locked.debt} points from refunds; "
            "redemptions resume once later earnings have repaid them",
            debt=locked.debt,
        )
    cost, quantity = await _cost(session, locked, data)

    redemption_id = f"rdm-{uuid.uuid4().hex}"
    posting = ledger.Posting(
        session,
        locked,
        "redemption",
        redemption_id,
        now,
        reason=f"reward {data.reward_id} x{quantity}"
        if data.reward_id
        else f"order discount {data.order_id or ''}".strip(),
    )
    await posting.spend(cost, entry_type=lm.REDEEM, key=f"redemption:{redemption_id}", now=now)
    used = [
        RedemptionLot(lot_id=r["lot_id"], points=-r["points"]) for r in posting.rows if r["lot_id"]
    ]
    balance = await posting.finish()
    await session.execute(
        redemptions.insert().values(
            redemption_id=redemption_id,
            member_id=member_id,
            reward_id=data.reward_id,
            quantity=quantity,
            order_id=data.order_id,
            points=cost,
            status=COMPLETED,
            created_at=now,
        )
    )
    out = RedemptionOut(
        redemption_id=redemption_id,
        member_id=member_id,
        reward_id=data.reward_id,
        quantity=quantity,
        order_id=data.order_id,
        points_spent=cost,
        lots=used,
        status=COMPLETED,
        balance=_balance(balance),
        created_at=now,
    )
    await events.publish(
        session,
        events.points_event(
            events.POINTS_REDEEMED,
            member_id,
            {
                "member_id": member_id,
                "redemption_id": redemption_id,
                "points": cost,
                "reward_id": data.reward_id,
                "quantity": quantity,
                "order_id": data.order_id,
                "lots": [lot.model_dump() for lot in used],
                "occurred_at": now.isoformat(),
                "balance_available": balance.available,
            },
            time=now,
        ),
    )
    return out


async def _cost(
    session: AsyncSession, locked: ledger.LockedBalance, data: RedemptionIn
) -> tuple[int, int | None]:
    """(points, quantity): a reward's cost x quantity, its stock taken; or the discount's."""
    if data.reward_id is None:
        assert data.points is not None
        return data.points, None
    quantity = data.quantity or 1
    reward = (
        await session.execute(
            select(rewards.c.points_cost, rewards.c.stock).where(
                rewards.c.reward_id == data.reward_id, rewards.c.active.is_(True)
            )
        )
    ).first()
    if reward is None:
        raise RewardNotFound(
            f"No active reward with id {data.reward_id!r}",
            errors=[{"field": "body.reward_id", "message": "unknown or inactive reward"}],
        )
    cost = int(reward.points_cost) * quantity
    if locked.available < cost:
        raise InsufficientPoints(
            f"Member {locked.member_id!r} has {max(locked.available, 0)} points, {cost} needed",
            available=max(locked.available, 0),
            required=cost,
        )
    taken = (
        await session.execute(
            update(rewards)
            .where(
                rewards.c.reward_id == data.reward_id,
                or_(rewards.c.stock.is_(None), rewards.c.stock >= quantity),
            )
            .values(stock=rewards.c.stock - quantity)
            .returning(rewards.c.stock)
        )
    ).first()
    if taken is None:
        raise OutOfStock(
            f"Reward {data.reward_id!r} has fewer than {quantity} left",
            reward_id=data.reward_id,
        )
    return cost, quantity


async def member_of(session: AsyncSession, redemption_id: str) -> str | None:
    """Whose redemption this is (None: there is none)."""
    member: str | None = (
        await session.execute(
            select(redemptions.c.member_id).where(redemptions.c.redemption_id == redemption_id)
        )
    ).scalar_one_or_none()
    return member


async def cancel(
    session: AsyncSession,
    settings: PointsSettings,
    redemption_id: str,
    *,
    now: datetime | None = None,
) -> CancelOut:
    """Give the points back: to the same lots while they have not expired, else as a new lot."""
    now = now or datetime.now(UTC)
    found = (
        await session.execute(
            select(redemptions.c.member_id).where(redemptions.c.redemption_id == redemption_id)
        )
    ).first()
    if found is None:
        raise RedemptionNotFound(
            f"No redemption with id {redemption_id!r}", redemption_id=redemption_id
        )
    # the member's points are gone with the member: no cancel after an erasure (404)
    locked = await lock_live_member(session, found.member_id)
    row = (
        await session.execute(
            select(
                redemptions.c.status,
                redemptions.c.reward_id,
                redemptions.c.quantity,
                redemptions.c.cancel_response,
            ).where(redemptions.c.redemption_id == redemption_id)
        )
    ).one()
    if row.status == CANCELLED:  # the redemption id is the natural key: replay
        return CancelOut.model_validate(row.cancel_response)

    posting = ledger.Posting(
        session, locked, "redemption", redemption_id, now, reason="redemption cancelled"
    )
    same, new = await _give_back(session, settings, posting, now)
    await posting.settle_debt(key=f"redemption:{redemption_id}:cancel")
    balance = await posting.finish()
    if row.reward_id is not None and row.quantity:
        await session.execute(
            update(rewards)
            .where(rewards.c.reward_id == row.reward_id, rewards.c.stock.is_not(None))
            .values(stock=rewards.c.stock + row.quantity)
        )
    out = CancelOut(
        redemption_id=redemption_id,
        member_id=found.member_id,
        points_returned=same + new,
        returned_to_same_lots=same,
        returned_as_new_lots=new,
        status=CANCELLED,
        balance=_balance(balance),
        cancelled_at=now,
    )
    await session.execute(
        update(redemptions)
        .where(redemptions.c.redemption_id == redemption_id)
        .values(status=CANCELLED, cancelled_at=now, cancel_response=out.model_dump(mode="json"))
    )
    await events.publish(
        session,
        events.points_event(
            events.REDEMPTION_CANCELLED,
            found.member_id,
            {
                "member_id": found.member_id,
                "redemption_id": redemption_id,
                "points_returned": same + new,
                "returned_to_same_lots": same,
                "returned_as_new_lots": new,
                "reward_id": row.reward_id,
                "occurred_at": now.isoformat(),
                "balance_available": balance.available,
            },
            time=now,
        ),
    )
    return out


async def _give_back(
    session: AsyncSession, settings: PointsSettings, posting: ledger.Posting, now: datetime
) -> tuple[int, int]:
    """The redemption's points back: (to the lots it spent, still open; as a new lot, for
    those that expired or closed meanwhile)."""
    redemption_id = posting.source_id
    spent = (
        await session.execute(
            select(
                entries.c.lot_id,
                entries.c.points,
                lots.c.status,
                lots.c.expires_at,
            )
            .join(lots, lots.c.id == entries.c.lot_id)
            .where(
                entries.c.source_type == "redemption",
                entries.c.source_id == redemption_id,
                entries.c.entry_type == lm.REDEEM,
            )
            .order_by(entries.c.id)
        )
    ).all()
    same = new = 0
    expired_points = 0
    for e in spent:
        points = -e.points
        still_open = e.status == lm.LOT_AVAILABLE and (e.expires_at is None or e.expires_at > now)
        if still_open:
            posting.entry(
                lm.CANCEL_REDEEM,
                f"redemption:{redemption_id}:cancel:lot:{e.lot_id}",
                points=points,
                lot_id=e.lot_id,
            )
            same += points
        else:
            expired_points += points
    if expired_points:
        await posting.credit(
            expired_points,
            key=f"redemption:{redemption_id}:cancel:new-lot",
            entry_type=lm.CANCEL_REDEEM,
            earned_at=now,
            available_at=now,
            expires_at=ledger.expiry_for(now, settings.expiry_months),
            lifetime=False,
        )
        new = expired_points
    return same, new
