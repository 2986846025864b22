"""Event types the feedback service publishes (payloads documented in docs/feedback.md)."""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import make_event
from loyalty_shared.outbox import enqueue
from loyalty_shared.topics import FEEDBACK_EVENTS

SOURCE = "loyalty/feedback"

COMPLAINT_OPENED = "loyalty.complaint.opened.v1"
COMPLAINT_ACKNOWLEDGED = "loyalty.complaint.acknowledged.v1"
COMPLAINT_ESCALATED = "loyalty.complaint.escalated.v1"
COMPLAINT_RESOLVED = "loyalty.complaint.resolved.v1"
COMPLAINT_REOPENED = "loyalty.complaint.reopened.v1"
COMPLAINT_CLOSED = "loyalty.complaint.closed.v1"
COMPLAINT_SLA_BREACHED = "loyalty.complaint.sla_breached.v1"
COMPLAINT_GOODWILL_GRANTED = "loyalty.complaint.goodwill_granted.v1"
SURVEY_COMPLETED = "loyalty.survey.completed.v1"
FOLLOW_UP_CREATED = "loyalty.follow_up.created.v1"
FOLLOW_UP_COMPLETED = "loyalty.follow_up.completed.v1"

# events this service consumes
TIER_CHANGED = "loyalty.tier.changed.v1"
MEMBER_ERASED = "loyalty.member.erased.v1"
ORDER_RECORDED = "loyalty.order.recorded.v1"
ORDER_REFUNDED = "loyalty.order.refunded.v1"
SEGMENT_ENTERED = "loyalty.segment.entered.v1"
SEGMENT_LEFT = "loyalty.segment.left.v1"
VALUE_TIER_CHANGED = "loyalty.profile.value_tier_changed.v1"
PROFILE_UPDATED = "loyalty.profile.updated.v1"
LIFECYCLE_CHANGED = "loyalty.profile.lifecycle_changed.v1"


async def publish(
    session: AsyncSession,
    type_: str,
    member_id: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    time: datetime | None = None,
) -> None:
    from feedback.db import outbox

    await enqueue(
        session,
        outbox,
        FEEDBACK_EVENTS,
        make_event(SOURCE, type_, member_id, data, event_id=event_id, time=time),
    )
