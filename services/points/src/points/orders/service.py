"""Recording completed orders: points earned once per order id."""

import hashlib
from decimal import ROUND_FLOOR, Decimal

import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from points import events
from points.errors import IdempotencyConflict, UnknownMember
from points.ledger import service as ledger
from points.orders.models import Order
from points.orders.schemas import BalanceSummary, OrderIn, OrderOut
from points.settings import PointsSettings


def request_fingerprint(data: OrderIn) -> str:
    canonical = orjson.dumps(data.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def base_points(amount: Decimal, rate: Decimal) -> int:
    """1 point per unit paid (configurable rate), rounded down per order."""
    return int((amount * rate).to_integral_value(rounding=ROUND_FLOOR))


async def record_order(session: AsyncSession, settings: PointsSettings, data: OrderIn) -> OrderOut:
    fingerprint = request_fingerprint(data)
    locked = await ledger.lock_balance(session, data.member_id)
    if locked is None:
        raise UnknownMember(
            f"Member {data.member_id!r} is not enrolled; enrol it with POST /v1/members first",
            errors=[{"field": "body.member_id", "message": "member is not enrolled"}],
        )
    points = base_points(data.amount, settings.earn_rate)
    response = OrderOut(
        order_id=data.order_id,
        member_id=data.member_id,
        points_earned=points,
        points_pending=0,
        campaigns_applied=[],
        balance=BalanceSummary(available=locked.available + points, pending=locked.pending),
        tier=locked.tier,
        tier_changed=False,
    )
    currency = data.currency or settings.default_currency
    inserted = (
        await session.execute(
            insert(Order)
            .values(
                order_id=data.order_id,
                member_id=data.member_id,
                amount=data.amount,
                currency=currency,
                discount_amount=data.discount_amount,
                coupon_used=data.coupon_used,
                channel=data.channel,
                items=[i.model_dump(mode="json") for i in data.items],
                occurred_at=data.occurred_at,
                points_earned=points,
                request_hash=fingerprint,
                response=response.model_dump(mode="json"),
            )
            .on_conflict_do_nothing(index_elements=[Order.order_id])
            .returning(Order.order_id)
        )
    ).first()
    if inserted is None:
        return await _replay(session, data, fingerprint)

    if points > 0:
        await ledger.credit(
            session,
            member_id=data.member_id,
            points=points,
            entry_type="earn",
            source_type="order",
            source_id=data.order_id,
            idempotency_key=f"order:{data.order_id}:earn",
            occurred_at=data.occurred_at,
            reason="purchase",
        )
    order_event = events.points_event(
        events.ORDER_RECORDED,
        data.member_id,
        {
            "order_id": data.order_id,
            "member_id": data.member_id,
            "amount": str(data.amount),
            "currency": currency,
            "discount_amount": str(data.discount_amount),
            "coupon_used": data.coupon_used,
            "channel": data.channel,
            "items": [i.model_dump(mode="json") for i in data.items],
            "occurred_at": data.occurred_at.isoformat(),
            "points_earned": points,
        },
        time=data.occurred_at,
    )
    earned_event = events.points_event(
        events.POINTS_EARNED,
        data.member_id,
        {
            "member_id": data.member_id,
            "points": points,
            "source_type": "order",
            "source_id": data.order_id,
            "occurred_at": data.occurred_at.isoformat(),
            "balance_available": response.balance.available,
        },
        time=data.occurred_at,
    )
    await events.publish(session, order_event, earned_event)
    return response


async def _replay(session: AsyncSession, data: OrderIn, fingerprint: str) -> OrderOut:
    existing = (
        await session.execute(
            select(Order.request_hash, Order.response).where(Order.order_id == data.order_id)
        )
    ).one()
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(
            f"Order {data.order_id!r} was already recorded with a different body",
            order_id=data.order_id,
        )
    return OrderOut.model_validate(existing.response)
