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
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import case, func, literal
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import Handler
from segmentation.analytics.models import ComplaintFact, SurveyScore

SURVEY_COMPLETED = "loyalty.survey.completed.v1"
COMPLAINT_OPENED = "loyalty.complaint.opened.v1"
COMPLAINT_ACKNOWLEDGED = "loyalty.complaint.acknowledged.v1"
COMPLAINT_ESCALATED = "loyalty.complaint.escalated.v1"
COMPLAINT_RESOLVED = "loyalty.complaint.resolved.v1"
COMPLAINT_REOPENED = "loyalty.complaint.reopened.v1"
COMPLAINT_CLOSED = "loyalty.complaint.closed.v1"
COMPLAINT_SLA_BREACHED = "loyalty.complaint.sla_breached.v1"
FOLLOW_UP_COMPLETED = "loyalty.follow_up.completed.v1"

POST_RESOLUTION = "post_resolution"  # the feedback service's follow-up reason after a resolve

C: Any = ComplaintFact.__table__.c


def _time(data: dict[str, Any], event: CloudEvent, *keys: str) -> datetime:
    for key in keys:
        raw = data.get(key)
        if raw:
            value = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
            if value.tzinfo is not None:
                return value
    return event.time


def _member(data: dict[str, Any], event: CloudEvent) -> str:
    member = data.get("member_id") or event.subject
    if not member:
        raise ValueError(f"{event.type} without member_id")
    return str(member)


def _score(raw: Any, low: int, high: int, name: str) -> Decimal | None:
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise ValueError(f"{name} is not a number: {raw!r}") from exc
    if not low <= value <= high:
        raise ValueError(f"{name} {value} outside {low}..{high}")
    return value


async def on_survey_completed(session: AsyncSession, event: CloudEvent) -> None:
    """One row per answer (response id): its NPS (0..10) and CSAT (1..5) and when."""
    data = event.data
    nps = _score(data.get("nps"), 0, 10, "nps")
    if nps is not None and nps != nps.to_integral_value():
        raise ValueError(f"nps is not an integer: {nps}")
    csat = _score(data.get("csat"), 1, 5, "csat")
    if nps is None and csat is None:
        return
    await session.execute(
        insert(SurveyScore)
        .values(
            response_id=str(data.get("response_id") or event.id),
            member_id=_member(data, event),
            nps=int(nps) if nps is not None else None,
            csat=csat,
            submitted_at=_time(data, event, "submitted_at", "occurred_at", "completed_at"),
        )
        .on_conflict_do_nothing(index_elements=[SurveyScore.response_id])
    )


async def _upsert(
    session: AsyncSession,
    event: CloudEvent,
    at: datetime,
    status: str | None,
    new: dict[str, Any] | None = None,
    **updates: Any,
) -> None:
    """Insert the complaint's row with ``new`` values, or apply ``updates`` (SQL over the
    existing row) to it; the status is set if this event is the newest seen."""
    data = event.data
    complaint_id = data.get("complaint_id")
    if not complaint_id:
        raise ValueError(f"{event.type} without complaint_id")
    stmt = insert(ComplaintFact).values(
        complaint_id=str(complaint_id),
        member_id=_member(data, event),
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
    at = _time(event.data, event, "opened_at", "occurred_at", "created_at")
    await _upsert(
        session, event, at, "open", {"opened_at": at}, opened_at=_earliest(C.opened_at, at)
    )


async def on_complaint_responded(session: AsyncSession, event: CloudEvent) -> None:
    """acknowledged: the first-response clock stopped."""
    at = _time(event.data, event, "at", "occurred_at")
    await _upsert(
        session,
        event,
        at,
        str(event.data.get("status") or "acknowledged"),
        {"first_responded_at": at},
        first_responded_at=_earliest(C.first_responded_at, at),
    )


async def on_complaint_resolved(session: AsyncSession, event: CloudEvent) -> None:
    """Resolution stops both clocks; the first one records first-contact resolution."""
    data = event.data
    at = _time(data, event, "resolved_at", "at", "occurred_at")
    fcr = data.get("first_contact_resolution")
    new: dict[str, Any] = {"first_responded_at": at, "first_resolved_at": at}
    updates: dict[str, Any] = {
        "first_responded_at": _earliest(C.first_responded_at, at),
        "first_resolved_at": _earliest(C.first_resolved_at, at),
    }
    if fcr is not None:
        new["first_contact_resolution"] = bool(fcr)
        first = C.first_resolved_at.is_(None) | (C.first_resolved_at > at)
        updates["first_contact_resolution"] = case(
            (first, literal(bool(fcr))), else_=C.first_contact_resolution
        )
    await _upsert(session, event, at, str(data.get("status") or "resolved"), new, **updates)


async def on_complaint_reopened(session: AsyncSession, event: CloudEvent) -> None:
    """Reopened: not a first-contact resolution any more (as the feedback service counts)."""
    at = _time(event.data, event, "at", "occurred_at")
    await _upsert(
        session,
        event,
        at,
        str(event.data.get("status") or "reopened"),
        first_contact_resolution=case(
            (C.first_resolved_at.is_not(None), literal(False)), else_=C.first_contact_resolution
        ),
    )


async def on_complaint_status(session: AsyncSession, event: CloudEvent) -> None:
    """escalated / closed: the status only."""
    at = _time(event.data, event, "at", "occurred_at")
    default = "closed" if event.type == COMPLAINT_CLOSED else "escalated"
    await _upsert(session, event, at, str(event.data.get("status") or default))


async def on_sla_breached(session: AsyncSession, event: CloudEvent) -> None:
    clock = str(event.data.get("clock") or "")
    column = {
        "first_response": "first_response_breached",
        "resolution": "resolution_breached",
    }.get(clock)
    if column is None:
        raise ValueError(f"sla_breached with unknown clock {clock!r}")
    at = _time(event.data, event, "detected_at", "occurred_at")
    await _upsert(session, event, at, None, {column: True}, **{column: literal(True)})


async def on_follow_up_completed(session: AsyncSession, event: CloudEvent) -> None:
    """A completed post-resolution follow-up covers its complaint."""
    data = event.data
    if data.get("reason") != POST_RESOLUTION or not data.get("complaint_id"):
        return
    at = _time(data, event, "completed_at", "occurred_at")
    await _upsert(
        session, event, at, None, {"follow_up_completed": True}, follow_up_completed=literal(True)
    )


FACT_HANDLERS: dict[str, Handler] = {
    SURVEY_COMPLETED: on_survey_completed,
    COMPLAINT_OPENED: on_complaint_opened,
    COMPLAINT_ACKNOWLEDGED: on_complaint_responded,
    COMPLAINT_ESCALATED: on_complaint_status,
    COMPLAINT_RESOLVED: on_complaint_resolved,
    COMPLAINT_REOPENED: on_complaint_reopened,
    COMPLAINT_CLOSED: on_complaint_status,
    COMPLAINT_SLA_BREACHED: on_sla_breached,
    FOLLOW_UP_COMPLETED: on_follow_up_completed,
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
