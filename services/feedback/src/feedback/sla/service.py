"""SLA rules: which policies apply to a complaint, its deadlines, and breach detection."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from feedback import events
from feedback.sla.calendar import AlwaysOpen, BusinessHours, Clock, InvalidCalendar
from feedback.sla.models import BusinessCalendar, SlaBreach, SlaPolicy
from feedback.sla.schemas import CalendarIn, CalendarOut, SlaPolicyIn, SlaPolicyOut
from loyalty_shared.problems import NotFound, Unprocessable

if TYPE_CHECKING:
    from feedback.complaints.models import Complaint
    from feedback.settings import FeedbackSettings

# a stable namespace: breach and goodwill ids are uuid5(complaint, clock, cycle)
BREACH_NAMESPACE = uuid.UUID("6f1d3c2e-4b7a-5e8f-9a0b-1c2d3e4f5a6b")

ONLINE_CHANNELS = frozenset({"online_chat", "app", "web", "email", "social"})
OFFLINE_CHANNELS = frozenset({"phone", "store"})

FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"
CLOSED_STATES = frozenset({"resolved", "closed"})


class CalendarNotFound(NotFound):
    slug = "calendar-not-found"
    title = "Business calendar not found"


class InvalidCalendarConfig(Unprocessable):
    slug = "invalid-calendar"
    title = "Invalid business calendar"


class UnknownCalendar(Unprocessable):
    slug = "unknown-calendar"
    title = "Unknown business calendar"


def channel_class(channel: str) -> str:
    return "online" if channel in ONLINE_CHANNELS else "offline"


@dataclass(frozen=True)
class AppliedSla:
    policy_ids: list[str]
    first_response_minutes: int
    resolution_minutes: int
    escalated_resolution_minutes: int | None
    calendar_id: str | None
    pausable: bool
    goodwill_points: int


def _matches(policy: SlaPolicy, facts: dict[str, str | None]) -> bool:
    pairs = (
        (policy.match_kind, facts["kind"]),
        (policy.match_channel_class, facts["channel_class"]),
        (policy.match_tier, facts["tier"]),
        (policy.match_value_tier, facts["value_tier"]),
        (policy.match_severity, facts["severity"]),
    )
    return all(
        want is None or (have is not None and want.lower() == have.lower()) for want, have in pairs
    )


async def applicable_sla(
    session: AsyncSession,
    settings: FeedbackSettings,
    *,
    kind: str,
    channel: str,
    tier: str | None,
    value_tier: str | None,
    severity: str,
) -> AppliedSla:
    """Every matching active policy applies; each clock is the shortest one they set."""
    policies = (
        await session.execute(
            select(SlaPolicy)
            .where(SlaPolicy.active.is_(True))
            .order_by(SlaPolicy.priority.desc(), SlaPolicy.id)
        )
    ).scalars()
    facts = {
        "kind": kind,
        "channel_class": channel_class(channel),
        "tier": tier,
        "value_tier": value_tier,
        "severity": severity,
    }
    matching = [p for p in policies if _matches(p, facts)]

    def shortest(values: list[int | None]) -> int | None:
        present = [v for v in values if v is not None]
        return min(present) if present else None

    first = shortest([p.first_response_minutes for p in matching])
    resolution = shortest([p.resolution_minutes for p in matching])
    primary = matching[0] if matching else None
    return AppliedSla(
        policy_ids=[p.id for p in matching],
        first_response_minutes=first
        if first is not None
        else int(settings.first_response_hours * 60),
        resolution_minutes=resolution
        if resolution is not None
        else int(settings.resolution_hours * 60),
        escalated_resolution_minutes=shortest([p.escalated_resolution_minutes for p in matching]),
        calendar_id=primary.calendar_id if primary else None,
        pausable=primary.pausable if primary else True,
        goodwill_points=max((p.goodwill_points for p in matching), default=0),
    )


async def clock_for(session: AsyncSession, calendar_id: str | None) -> Clock:
    if calendar_id is None:
        return AlwaysOpen()
    row = await session.get(BusinessCalendar, calendar_id)
    if row is None:  # a calendar in use cannot be deleted; treat a vanished one as 24/7
        return AlwaysOpen()
    return BusinessHours.from_config(row.timezone, row.hours, row.holidays)


def next_due(complaint: Complaint) -> datetime | None:
    """The earliest deadline of a clock that is still running and not yet breached."""
    if complaint.paused_at is not None:
        return None
    dues: list[datetime] = []
    if complaint.first_responded_at is None and complaint.first_response_breached_at is None:
        dues.append(complaint.first_response_due_at)
    if complaint.status not in CLOSED_STATES and complaint.resolution_breached_at is None:
        dues.append(complaint.resolution_due_at)
    return min(dues) if dues else None


def breach_id(complaint_id: str, clock: str, cycle: int) -> str:
    return str(uuid.uuid5(BREACH_NAMESPACE, f"{complaint_id}:{clock}:{cycle}"))


async def record_breach(
    session: AsyncSession, complaint: Complaint, clock: str, now: datetime
) -> bool:
    """Record (once) that ``clock`` of the complaint's current cycle ran past its deadline."""
    cycle = 0 if clock == FIRST_RESPONSE else complaint.cycle
    due = (
        complaint.first_response_due_at if clock == FIRST_RESPONSE else complaint.resolution_due_at
    )
    bid = breach_id(complaint.id, clock, cycle)
    inserted = (
        await session.execute(
            insert(SlaBreach)
            .values(
                id=bid,
                complaint_id=complaint.id,
                member_id=complaint.member_id,
                clock=clock,
                cycle=cycle,
                due_at=due,
                detected_at=now,
                goodwill_points=complaint.goodwill_points,
            )
            .on_conflict_do_nothing()
            .returning(SlaBreach.id)
        )
    ).scalar_one_or_none()
    if clock == FIRST_RESPONSE:
        complaint.first_response_breached_at = complaint.first_response_breached_at or now
    else:
        complaint.resolution_breached_at = complaint.resolution_breached_at or now
    complaint.breached = True
    complaint.next_due_at = next_due(complaint)
    if inserted is None:
        return False
    await events.publish(
        session,
        events.COMPLAINT_SLA_BREACHED,
        complaint.member_id,
        {
            "breach_id": bid,
            "complaint_id": complaint.id,
            "member_id": complaint.member_id,
            "clock": clock,
            "cycle": cycle,
            "due_at": due.isoformat(),
            "detected_at": now.isoformat(),
            "member_tier": complaint.member_tier,
            "owner_id": complaint.owner_id,
        },
        event_id=bid,
        time=now,
    )
    if complaint.goodwill_points > 0:
        grant = str(uuid.uuid5(BREACH_NAMESPACE, f"goodwill:{bid}"))
        await events.publish(
            session,
            events.COMPLAINT_GOODWILL_GRANTED,
            complaint.member_id,
            {
                "grant_id": grant,
                "breach_id": bid,
                "complaint_id": complaint.id,
                "member_id": complaint.member_id,
                "points": complaint.goodwill_points,
                "reason": f"SLA breach ({clock}) on complaint {complaint.id}",
            },
            event_id=grant,
            time=now,
        )
    return True


async def detect_breaches(session: AsyncSession, now: datetime, *, limit: int = 500) -> list[str]:
    """The periodic job: every running clock past its deadline becomes one breach (once).

    Returns the ids of complaints with a newly recorded breach. Rows are locked with
    SKIP LOCKED so two workers never publish the same breach.
    """
    from feedback.complaints.models import Complaint

    rows = (
        await session.execute(
            select(Complaint)
            .where(Complaint.next_due_at.is_not(None), Complaint.next_due_at <= now)
            .order_by(Complaint.next_due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).scalars()
    breached: list[str] = []
    for complaint in rows:
        new = False
        if (
            complaint.first_responded_at is None
            and complaint.first_response_breached_at is None
            and complaint.first_response_due_at <= now
        ):
            new = await record_breach(session, complaint, FIRST_RESPONSE, now) or new
        if (
            complaint.status not in CLOSED_STATES
            and complaint.resolution_breached_at is None
            and complaint.resolution_due_at <= now
        ):
            new = await record_breach(session, complaint, RESOLUTION, now) or new
        complaint.next_due_at = next_due(complaint)
        if new:
            breached.append(complaint.id)
    await session.flush()
    return breached


async def breaches_of(session: AsyncSession, complaint_id: str) -> list[SlaBreach]:
    return list(
        (
            await session.execute(
                select(SlaBreach)
                .where(SlaBreach.complaint_id == complaint_id)
                .order_by(SlaBreach.detected_at, SlaBreach.clock)
            )
        ).scalars()
    )


# ---- policies and calendars as data ------------------------------------------------------


def _policy_out(p: SlaPolicy) -> SlaPolicyOut:
    return SlaPolicyOut.model_validate(
        {
            "id": p.id,
            "name": p.name,
            "priority": p.priority,
            "active": p.active,
            "match": {
                "kind": p.match_kind,
                "channel_class": p.match_channel_class,
                "tier": p.match_tier,
                "value_tier": p.match_value_tier,
                "severity": p.match_severity,
            },
            "first_response_minutes": p.first_response_minutes,
            "resolution_minutes": p.resolution_minutes,
            "escalated_resolution_minutes": p.escalated_resolution_minutes,
            "calendar_id": p.calendar_id,
            "pausable": p.pausable,
            "goodwill_points": p.goodwill_points,
            "updated_at": p.updated_at,
        }
    )


async def list_policies(session: AsyncSession) -> list[SlaPolicyOut]:
    rows = (
        await session.execute(select(SlaPolicy).order_by(SlaPolicy.priority, SlaPolicy.id))
    ).scalars()
    return [_policy_out(p) for p in rows]


async def put_policy(
    session: AsyncSession, policy_id: str, data: SlaPolicyIn, now: datetime
) -> tuple[SlaPolicyOut, bool]:
    if (
        data.calendar_id is not None
        and await session.get(BusinessCalendar, data.calendar_id) is None
    ):
        raise UnknownCalendar(
            f"No business calendar {data.calendar_id!r}",
            errors=[
                {"field": "body.calendar_id", "message": "unknown calendar", "type": "unknown"}
            ],
        )
    values: dict[str, Any] = {
        "name": data.name,
        "priority": data.priority,
        "active": data.active,
        "match_kind": data.match.kind.value if data.match.kind else None,
        "match_channel_class": data.match.channel_class.value if data.match.channel_class else None,
        "match_tier": data.match.tier.lower() if data.match.tier else None,
        "match_value_tier": data.match.value_tier.value if data.match.value_tier else None,
        "match_severity": data.match.severity.value if data.match.severity else None,
        "first_response_minutes": data.first_response_minutes,
        "resolution_minutes": data.resolution_minutes,
        "escalated_resolution_minutes": data.escalated_resolution_minutes,
        "calendar_id": data.calendar_id,
        "pausable": data.pausable,
        "goodwill_points": data.goodwill_points,
        "updated_at": now,
    }
    policy = await session.get(SlaPolicy, policy_id, with_for_update=True)
    created = policy is None
    if policy is None:
        policy = SlaPolicy(id=policy_id, **values)
        session.add(policy)
    else:
        for key, value in values.items():
            setattr(policy, key, value)
    await session.flush()
    return _policy_out(policy), created


def _calendar_out(c: BusinessCalendar) -> CalendarOut:
    return CalendarOut(
        id=c.id,
        name=c.name,
        timezone=c.timezone,
        hours=c.hours,
        holidays=c.holidays,
        updated_at=c.updated_at,
    )


async def list_calendars(session: AsyncSession) -> list[CalendarOut]:
    rows = (await session.execute(select(BusinessCalendar).order_by(BusinessCalendar.id))).scalars()
    return [_calendar_out(c) for c in rows]


async def put_calendar(
    session: AsyncSession, calendar_id: str, data: CalendarIn, now: datetime
) -> tuple[CalendarOut, bool]:
    try:
        BusinessHours.from_config(data.timezone, data.hours, [d.isoformat() for d in data.holidays])
    except InvalidCalendar as exc:
        raise InvalidCalendarConfig(
            str(exc), errors=[{"field": "body", "message": str(exc), "type": "invalid_calendar"}]
        ) from exc
    row = await session.get(BusinessCalendar, calendar_id, with_for_update=True)
    created = row is None
    holidays = sorted({d.isoformat() for d in data.holidays_as_dates()})
    if row is None:
        row = BusinessCalendar(
            id=calendar_id,
            name=data.name,
            timezone=data.timezone,
            hours=dict(data.hours),
            holidays=holidays,
            updated_at=now,
        )
        session.add(row)
    else:
        row.name, row.timezone, row.hours, row.holidays = (
            data.name,
            data.timezone,
            dict(data.hours),
            holidays,
        )
        row.updated_at = now
    await session.flush()
    return _calendar_out(row), created
