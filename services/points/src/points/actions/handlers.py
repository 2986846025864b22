"""Handlers for ``loyalty.feedback.events`` (consumer group ``points``; docs/feedback.md).

- ``loyalty.survey.completed.v1`` {survey_id, response_id, member_id, ...}: the ``survey``
  earning rule's points (caps apply), once per response (natural key
  ``survey:<response_id>``);
- ``loyalty.complaint.goodwill_granted.v1`` {grant_id, member_id, points, reason}: the
  granted points within the member's monthly goodwill cap (``goodwill.py``), once per
  grant (natural key ``goodwill:<grant_id>``).

Payloads are read with the feedback service's models (``loyalty_shared.contracts.feedback``):
a payload without a required field is dead-lettered with the reason. The inbox makes each
event id run once; the natural keys make a re-published event with a
new id harmless too. An event for a member this service does not know is logged and
skipped (nothing to credit; retrying would not help).
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.contracts.feedback import ComplaintGoodwillGrantedV1, SurveyCompletedV1
from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import Handler
from points.actions.credit import earn_for_action, lock_action_member
from points.actions.goodwill import credit_goodwill
from points.ledger.models import entries
from points.settings import PointsSettings
from points.tiers.service import load_ladder

log = structlog.get_logger("points.actions.handlers")

SURVEY_COMPLETED = SurveyCompletedV1.TYPE
GOODWILL_GRANTED = ComplaintGoodwillGrantedV1.TYPE


async def _already(session: AsyncSession, key: str) -> bool:
    found = await session.execute(select(entries.c.id).where(entries.c.idempotency_key == key))
    return found.first() is not None


def build_handlers(settings: PointsSettings) -> dict[str, Handler]:
    async def survey_completed(session: AsyncSession, event: CloudEvent) -> None:
        data = SurveyCompletedV1.of(event)
        member = await lock_action_member(session, data.member_id)
        key = f"survey:{data.response_id}"
        if member is None:
            log.warning("survey_for_unknown_member", member_id=data.member_id)
            return
        if await _already(session, key):
            return
        at = data.submitted_at
        earned = await earn_for_action(
            session,
            settings,
            await load_ladder(session),
            member,
            action="survey",
            key=key,
            source_id=data.response_id,
            at=at,
            details={"survey_id": data.survey_id, "response_id": data.response_id},
        )
        log.info(
            "survey_bonus", member_id=data.member_id, points=earned.points, reason=earned.reason
        )

    async def goodwill_granted(session: AsyncSession, event: CloudEvent) -> None:
        data = ComplaintGoodwillGrantedV1.of(event)
        member = await lock_action_member(session, data.member_id)
        key = f"goodwill:{data.grant_id}"
        if member is None:
            log.warning("goodwill_for_unknown_member", member_id=data.member_id)
            return
        if data.points == 0 or await _already(session, key):
            return
        await credit_goodwill(
            session,
            settings,
            member,
            grant_id=data.grant_id,
            requested=data.points,
            reason=data.reason,
            complaint_id=data.complaint_id,
            at=event.time or datetime.now(UTC),
        )

    return {
        SurveyCompletedV1.TYPE: survey_completed,
        ComplaintGoodwillGrantedV1.TYPE: goodwill_granted,
    }
