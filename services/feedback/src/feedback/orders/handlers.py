"""Consumers of points' order events: the orders that complaint rates are measured against.

Payloads are read with the points service's models (``loyalty_shared.contracts.points``).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.orders.models import OrderFact
from loyalty_shared.contracts.points import OrderRecordedV1, OrderRefundedV1
from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import Handler


async def on_order_recorded(session: AsyncSession, event: CloudEvent) -> None:
    data = OrderRecordedV1.of(event)
    await session.execute(
        insert(OrderFact)
        .values(order_id=data.order_id, member_id=data.member_id, occurred_at=data.occurred_at)
        .on_conflict_do_nothing()
    )


async def on_order_refunded(session: AsyncSession, event: CloudEvent) -> None:
    data = OrderRefundedV1.of(event)
    await session.execute(
        update(OrderFact)
        .where(OrderFact.order_id == data.order_id, OrderFact.refunded_at.is_(None))
        .values(refunded_at=data.occurred_at)
    )


HANDLERS: dict[str, Handler] = {
    OrderRecordedV1.TYPE: on_order_recorded,
    OrderRefundedV1.TYPE: on_order_refunded,
}
