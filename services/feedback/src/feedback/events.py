"""Event types the feedback service publishes: the payload models are its contract
(``loyalty_shared.contracts.feedback``, where consumers read them too; docs/events.md).

``publish`` checks ``data`` against the type's model (no field the model lacks, none
missing) and writes what the model dumps.
"""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.contracts import feedback as contract
from loyalty_shared.outbox import enqueue
from loyalty_shared.topics import FEEDBACK_EVENTS

SOURCE = contract.FeedbackEvent.SOURCE

COMPLAINT_OPENED = contract.ComplaintOpenedV1.TYPE
COMPLAINT_ACKNOWLEDGED = contract.ComplaintAcknowledgedV1.TYPE
COMPLAINT_ESCALATED = contract.ComplaintEscalatedV1.TYPE
COMPLAINT_RESOLVED = contract.ComplaintResolvedV1.TYPE
COMPLAINT_REOPENED = contract.ComplaintReopenedV1.TYPE
COMPLAINT_CLOSED = contract.ComplaintClosedV1.TYPE
COMPLAINT_SLA_BREACHED = contract.ComplaintSlaBreachedV1.TYPE
COMPLAINT_GOODWILL_GRANTED = contract.ComplaintGoodwillGrantedV1.TYPE
SURVEY_COMPLETED = contract.SurveyCompletedV1.TYPE
FOLLOW_UP_CREATED = contract.FollowUpCreatedV1.TYPE
FOLLOW_UP_COMPLETED = contract.FollowUpCompletedV1.TYPE

MODELS: dict[str, type[contract.FeedbackEvent]] = {m.TYPE: m for m in contract.PUBLISHED}


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

    payload = MODELS[type_].written(data)
    await enqueue(
        session,
        outbox,
        FEEDBACK_EVENTS,
        payload.event(member_id, event_id=event_id, time=time),
    )
