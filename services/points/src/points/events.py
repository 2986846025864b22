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
TIER_CHANGED = "loyalty.tier.changed.v1"
INTERACTION_RECORDED = "loyalty.interaction.recorded.v1"
MEMBER_ERASED = "loyalty.member.erased.v1"


def points_event(
    type_: str, member_id: str, data: dict[str, Any], *, time: datetime | None = None
) -> CloudEvent:
    return make_event(SOURCE, type_, member_id, data, time=time)


def tier_changed(
    member_id: str,
    from_tier: str,
    to_tier: str,
    *,
    direction: str,
    reason: str,
    growth_value: int,
    at: datetime,
) -> CloudEvent:
    """``loyalty.tier.changed.v1``: one shape for the order flow, ladder changes and evaluation."""
    return points_event(
        TIER_CHANGED,
        member_id,
        {
            "member_id": member_id,
            "from_tier": from_tier,
            "to_tier": to_tier,
            "direction": direction,
            "reason": reason,
            "growth_value": growth_value,
            "occurred_at": at.isoformat(),
        },
        time=at,
    )


async def publish(session: AsyncSession, *events: CloudEvent) -> None:
    from points.db import outbox

    await enqueue(await session.connection(), outbox, POINTS_EVENTS, *events)
