"""Facts from the feedback service's events that the ops KPIs need per period.

The profile keeps only running totals of feedback (``nps_last``, the CSAT average,
complaint counts); NPS, CSAT, complaint rate, SLA compliance, first-contact resolution
and follow-up coverage over a chosen period need each answer and each complaint with
its times. These handlers keep them (``survey_scores``, ``complaint_facts``) beside the
profile handlers of the same event types (``with_feedback_facts``), in the same
transaction, idempotent like them (natural keys: response id, complaint id).

Events for one member arrive in order (keyed by member id); a complaint event that
arrives without its ``opened`` still creates the row (``opened_at`` NULL: it counts in
no "opened in the period" figure). The status keeps the newest by event time; first
response / first resolution keep the earliest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, literal
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.contracts.feedback import (
    ComplaintAcknowledgedV1,
    ComplaintClosedV1,
    ComplaintEscalatedV1,
    ComplaintOpenedV1,
    ComplaintReopenedV1,
    ComplaintResolvedV1,
    ComplaintSlaBreachedV1,
    FollowUpCompletedV1,
    SurveyCompletedV1,
)
from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import Handler
from segmentation.analytics.models import ComplaintFact, SurveyScore

POST_RESOLUTION = "post_resolution"  # the feedback service's follow-up reason after a resolve

C: Any = ComplaintFact.__table__.c


async def on_survey_completed(session: AsyncSession, event: CloudEvent) -> None:
    """One row per answer (response id): its NPS (0..10) and CSAT (1..5) and when."""
    data = SurveyCompletedV1.of(event)
    if data.nps is None and data.csat is None:
        return
    await session.execute(
        insert(SurveyScore)
        .values(
            response_id=data.response_id,
            member_id=data.member_id,
            nps=data.nps,
            csat=Decimal(data.csat) if data.csat is not None else None,
            submitted_at=data.submitted_at,
        )
        .on_conflict_do_nothing(index_elements=[SurveyScore.response_id])
    )


async def _upsert(
    session: AsyncSession,
    complaint_id: str,
    member_id: str,
    at: datetime,
    status: str | None,
    new: dict[str, Any] | None = None,
    **updates: Any,
) -> None:
    """Insert the complaint's row with ``new`` values, or apply ``updates`` (SQL over the
    existing row) to it; the status is set if this event is the newest seen."""
    stmt = insert(ComplaintFact).values(
        complaint_id=complaint_id,
        member_id=member_id,
        status=status,
        status_at=at if status else None,
        **(new or {}),
    )
    set_: dict[str, Any] = dict(updates)
    if status:
        newer = C.status_at.is_(None) | (C.status_at <= stmt.excluded.status_at)
        set_["status"] = case((newer, stmt.excluded.status), else_=C.status)
        set_["status_at"] = case((newer, stmt.excluded.status_at), else_=C.status_at)
    if not set_:
        await session.execute(stmt.on_conflict_do_nothing(index_elements=[C.complaint_id]))
        return
    await session.execute(stmt.on_conflict_do_update(index_elements=[C.complaint_id], set_=set_))


def _earliest(column: Any, at: datetime) -> Any:
    return func.least(column, literal(at))


async def on_complaint_opened(session: AsyncSession, event: CloudEvent) -> None:
    data = ComplaintOpenedV1.of(event)
    at = data.opened_at
    await _upsert(
        session,
        data.complaint_id,
        data.member_id,
        at,
        "open",
        {"opened_at": at},
        opened_at=_earliest(C.opened_at, at),
    )


async def on_complaint_responded(session: AsyncSession, event: CloudEvent) -> None:
    """acknowledged: the first-response clock stopped."""
    data = ComplaintAcknowledgedV1.of(event)
    at = data.at
    await _upsert(
        session,
        data.complaint_id,
        data.member_id,
        at,
        data.status,
        {"first_responded_at": at},
        first_responded_at=_earliest(C.first_responded_at, at),
    )


async def on_complaint_resolved(session: AsyncSession, event: CloudEvent) -> None:
    """Resolution stops both clocks; the first one records first-contact resolution."""
    data = ComplaintResolvedV1.of(event)
    at, fcr = data.resolved_at, data.first_contact_resolution
    first = C.first_resolved_at.is_(None) | (C.first_resolved_at > at)
    await _upsert(
        session,
        data.complaint_id,
        data.member_id,
        at,
        data.status,
        {"first_responded_at": at, "first_resolved_at": at, "first_contact_resolution": fcr},
        first_responded_at=_earliest(C.first_responded_at, at),
        first_resolved_at=_earliest(C.first_resolved_at, at),
        first_contact_resolution=case((first, literal(fcr)), else_=C.first_contact_resolution),
    )


async def on_complaint_reopened(session: AsyncSession, event: CloudEvent) -> None:
    """Reopened: not a first-contact resolution any more (as the feedback service counts)."""
    data = ComplaintReopenedV1.of(event)
    await _upsert(
        session,
        data.complaint_id,
        data.member_id,
        data.at,
        data.status,
        first_contact_resolution=case(
            (C.first_resolved_at.is_not(None), literal(False)), else_=C.first_contact_resolution
        ),
    )


def on_complaint_status(model: type[ComplaintEscalatedV1 | ComplaintClosedV1]) -> Handler:
    """escalated / closed: the status only."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        data = model.of(event)
        await _upsert(session, data.complaint_id, data.member_id, data.at, data.status)

    return handle


_BREACHED_COLUMN = {
    "first_response": "first_response_breached",
    "resolution": "resolution_breached",
}


async def on_sla_breached(session: AsyncSession, event: CloudEvent) -> None:
    data = ComplaintSlaBreachedV1.of(event)
    column = _BREACHED_COLUMN[data.clock]
    await _upsert(
        session,
        data.complaint_id,
        data.member_id,
        data.detected_at,
        None,
        {column: True},
        **{column: literal(True)},
    )


async def on_follow_up_completed(session: AsyncSession, event: CloudEvent) -> None:
    """A completed post-resolution follow-up covers its complaint."""
    data = FollowUpCompletedV1.of(event)
    if data.reason != POST_RESOLUTION or not data.complaint_id:
        return
    await _upsert(
        session,
        data.complaint_id,
        data.member_id,
        data.completed_at,
        None,
        {"follow_up_completed": True},
        follow_up_completed=literal(True),
    )


FACT_HANDLERS: dict[str, Handler] = {
    SurveyCompletedV1.TYPE: on_survey_completed,
    ComplaintOpenedV1.TYPE: on_complaint_opened,
    ComplaintAcknowledgedV1.TYPE: on_complaint_responded,
    ComplaintEscalatedV1.TYPE: on_complaint_status(ComplaintEscalatedV1),
    ComplaintResolvedV1.TYPE: on_complaint_resolved,
    ComplaintReopenedV1.TYPE: on_complaint_reopened,
    ComplaintClosedV1.TYPE: on_complaint_status(ComplaintClosedV1),
    ComplaintSlaBreachedV1.TYPE: on_sla_breached,
    FollowUpCompletedV1.TYPE: on_follow_up_completed,
}


def _both(first: Handler, second: Handler) -> Handler:
    async def handler(session: AsyncSession, event: CloudEvent) -> None:
        await first(session, event)
        await second(session, event)

    return handler


def with_feedback_facts(handlers: Mapping[str, Handler]) -> dict[str, Handler]:
    """``handlers`` plus the fact handlers (after the profile's own, for shared types)."""
    combined = dict(handlers)
    for type_, fact in FACT_HANDLERS.items():
        combined[type_] = _both(combined[type_], fact) if type_ in combined else fact
    return combined
