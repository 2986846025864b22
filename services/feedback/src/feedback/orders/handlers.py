"""Consumers of points' order events: the orders that complaint rates are measured against.

Payloads are read with the points service's models (``loyalty_shared.contracts.points``).
"""

from __future__ import annotations

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.orders.models import OrderFact
from loyalty_shared.contracts.points import OrderRecordedV1, OrderRefundedV1
from loyalty_shared.erasure import MEMBER_ERASED
from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import EventConsumer, Handler


async def on_order_recorded(session: AsyncSession, event: CloudEvent) -> None:
    await on_orders_recorded(session, [event])


# Over arrays (unnest): one statement text whatever the batch's size, compiled and
# prepared once; a multi-row VALUES was a new statement of up to a thousand rows at every
# batch (15% of the consumer's CPU in a history import).
_ORDER_FACTS = text(
    "INSERT INTO order_facts (order_id, member_id, occurred_at) "
    "SELECT * FROM unnest(CAST(:orders AS text[]), CAST(:members AS text[]), "
    "CAST(:ats AS timestamptz[])) ON CONFLICT DO NOTHING"
)


async def on_orders_recorded(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Many orders in one statement (a history import publishes thousands at once)."""
    if not events:
        return
    orders = [OrderRecordedV1.of(event) for event in events]
    await session.execute(
        _ORDER_FACTS,
        {
            "orders": [o.order_id for o in orders],
            "members": [o.member_id for o in orders],
            "ats": [o.occurred_at for o in orders],
        },
    )


async def on_order_refunded(session: AsyncSession, event: CloudEvent) -> None:
    data = OrderRefundedV1.of(event)
    await session.execute(
        update(OrderFact)
        .where(OrderFact.order_id == data.order_id, OrderFact.refunded_at.is_(None))
        .values(refunded_at=data.occurred_at)
    )


class OrdersBatchingConsumer(EventConsumer):
    """The feedback consumer: a polled batch's ``order.recorded`` events are written in one
    statement, before any event that reads or removes order facts (a refund, an erasure)
    and at the batch's end; the other events one at a time, in order."""

    BARRIERS = frozenset({OrderRefundedV1.TYPE, MEMBER_ERASED})
    # the batch's orders are kept on the instance (``_orders``): one lane only
    lane_safe = False

    async def apply_fresh(self, session: AsyncSession, events: list[CloudEvent]) -> int:
        self._orders: list[CloudEvent] = []
        skipped = await super().apply_fresh(session, events)
        await self._flush(session)
        return skipped

    async def handle(self, session: AsyncSession, event: CloudEvent) -> None:
        if event.type == OrderRecordedV1.TYPE:
            self._orders.append(event)
            return
        if event.type in self.BARRIERS:
            await self._flush(session)
        await super().handle(session, event)

    async def _flush(self, session: AsyncSession) -> None:
        orders, self._orders = self._orders, []
        await on_orders_recorded(session, orders)


HANDLERS: dict[str, Handler] = {
    OrderRecordedV1.TYPE: on_order_recorded,
    OrderRefundedV1.TYPE: on_order_refunded,
}
