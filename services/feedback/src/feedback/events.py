"""Event types the feedback service publishes (payloads documented in docs/events.md)."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import make_event
from loyalty_shared.outbox import enqueue
from loyalty_shared.topics import FEEDBACK_EVENTS

SOURCE = "loyalty/feedback"

COMPLAINT_OPENED = "loyalty.complaint.opened.v1"


async def publish(session: AsyncSession, type_: str, member_id: str, data: dict[str, Any]) -> None:
    from feedback.db import outbox

    await enqueue(session, outbox, FEEDBACK_EVENTS, make_event(SOURCE, type_, member_id, data))
