"""Consumers of points' order events: the orders that complaint rates are measured against."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from feedback import events
from feedback.orders.models import OrderFact
from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import Handler


def _when(event: CloudEvent) -> datetime:
    raw = event.data.get("occurred_at")
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
            if parsed.tzinfo is not None:
                return parsed
        except ValueError:
            pass
    return event.time


async def on_order_recorded(session: AsyncSession, event: CloudEvent) -> None:
    order_id = event.data.get("order_id")
    member_id = event.data.get("member_id") or event.subject
    if not order_id or not member_id:
        raise ValueError("order.recorded without order_id or member_id")
    await session.execute(
        insert(OrderFact)
        .values(order_id=str(order_id), member_id=str(member_id), occurred_at=_when(event))
        .on_conflict_do_nothing()
    )


async def on_order_refunded(session: AsyncSession, event: CloudEvent) -> None:
    order_id = event.data.get("order_id")
    if not order_id:
        raise ValueError("order.refunded without order_id")
    await session.execute(
        update(OrderFact)
        .where(OrderFact.order_id == str(order_id), OrderFact.refunded_at.is_(None))
        .values(refunded_at=_when(event))
    )


HANDLERS: dict[str, Handler] = {
    events.ORDER_RECORDED: on_order_recorded,
    events.ORDER_REFUNDED: on_order_refunded,
}
