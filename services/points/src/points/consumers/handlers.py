"""Handlers for ``loyalty.feedback.events`` (consumer group ``points``; docs/feedback.md).

- ``loyalty.survey.completed.v1`` {survey_id, response_id, member_id, ...}: the ``survey``
  earning rule's points (caps apply), once per response (natural key
  ``survey:<response_id>``);
- ``loyalty.complaint.goodwill_granted.v1`` {grant_id, member_id, points, reason}: the
  granted points within the member's monthly goodwill cap (``goodwill.py``), once per
  grant (natural key ``goodwill:<grant_id>``).

The inbox makes each event id run once; the natural keys make a re-published event with a
new id harmless too. An event for a member this service does not know is logged and
skipped (nothing to credit; retrying would not help).
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import Handler
from points.actions.credit import earn_for_action, lock_action_member
from points.consumers.goodwill import credit_goodwill
from points.ledger.models import entries
from points.settings import PointsSettings
from points.tiers.service import load_ladder

log = structlog.get_logger("points.consumers")

SURVEY_COMPLETED = "loyalty.survey.completed.v1"
GOODWILL_GRANTED = "loyalty.complaint.goodwill_granted.v1"


class SurveyCompleted(BaseModel):
    model_config = ConfigDict(extra="ignore")

    response_id: str = Field(min_length=1, max_length=128)
    member_id: str = Field(min_length=1, max_length=128)
    survey_id: str | None = None
    submitted_at: datetime | None = None


class GoodwillGranted(BaseModel):
    model_config = ConfigDict(extra="ignore")

    grant_id: str = Field(min_length=1, max_length=128)
    member_id: str = Field(min_length=1, max_length=128)
    points: int = Field(ge=0, le=10_000_000)
    reason: str | None = None
    complaint_id: str | None = None


async def _already(session: AsyncSession, key: str) -> bool:
    found = await session.execute(select(entries.c.id).where(entries.c.idempotency_key == key))
    return found.first() is not None


def _aware(at: datetime | None, fallback: datetime) -> datetime:
    if at is None or at.tzinfo is None:
        return fallback
    return at


def build_handlers(settings: PointsSettings) -> dict[str, Handler]:
    async def survey_completed(session: AsyncSession, event: CloudEvent) -> None:
        data = SurveyCompleted.model_validate(event.data)
        member = await lock_action_member(session, data.member_id)
        key = f"survey:{data.response_id}"
        if member is None:
            log.warning("survey_for_unknown_member", member_id=data.member_id)
            return
        if await _already(session, key):
            return
        at = _aware(data.submitted_at, event.time or datetime.now(UTC))
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
        data = GoodwillGranted.model_validate(event.data)
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

    return {SURVEY_COMPLETED: survey_completed, GOODWILL_GRANTED: goodwill_granted}
