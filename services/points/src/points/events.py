"""Event types the points service publishes (payloads documented in docs/points-ledger.md)."""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import CloudEvent, make_event
from loyalty_shared.outbox import enqueue
from loyalty_shared.topics import POINTS_EVENTS

SOURCE = "loyalty/points"

MEMBER_ENROLLED = "loyalty.member.enrolled.v1"
ORDER_RECORDED = "loyalty.order.recorded.v1"
ORDER_REFUNDED = "loyalty.order.refunded.v1"
POINTS_EARNED = "loyalty.points.earned.v1"
POINTS_MATURED = "loyalty.points.matured.v1"
POINTS_REVERSED = "loyalty.points.reversed.v1"
POINTS_REDEEMED = "loyalty.points.redeemed.v1"
REDEMPTION_CANCELLED = "loyalty.points.redemption_cancelled.v1"
POINTS_EXPIRED = "loyalty.points.expired.v1"
POINTS_ADJUSTED = "loyalty.points.adjusted.v1"


def points_event(
    type_: str, member_id: str, data: dict[str, Any], *, time: datetime | None = None
) -> CloudEvent:
    return make_event(SOURCE, type_, member_id, data, time=time)


async def publish(session: AsyncSession, *events: CloudEvent) -> None:
    from points.db import outbox

    await enqueue(await session.connection(), outbox, POINTS_EVENTS, *events)
