"""Complaints: opening with SLA deadlines, the state machine with history, the queue."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from feedback import events
from feedback.complaints import limits, repository, triage
from feedback.complaints.models import Complaint, ComplaintAction
from feedback.complaints.schemas import (
    Action,
    ActionIn,
    ClockOut,
    ComplaintIn,
    ComplaintOut,
    ComplaintPage,
    HistoryEntry,
    SlaOut,
)
from feedback.complaints.transitions import (
    EFFECTS,
    RESUMING,
    TRANSITIONS,
    Step,
)
from feedback.followups import service as follow_ups
from feedback.members.models import MemberProjection
from feedback.settings import FeedbackSettings
from feedback.sla import service as sla
from feedback.sla.calendar import Clock
from loyalty_shared import cursors, erasure
from loyalty_shared.caller import INTERNAL, Caller
from loyalty_shared.problems import Conflict, Forbidden, NotFound, Unprocessable


class ComplaintNotFound(NotFound):
    slug = "complaint-not-found"
    title = "Complaint not found"


class IllegalTransition(Conflict):
    slug = "illegal-transition"
    title = "Action not allowed in the complaint's current state"


class ReopenWindowExpired(Conflict):
    slug = "reopen-window-expired"
    title = "The reopen window has passed"


class PauseNotAllowed(Conflict):
    slug = "pause-not-allowed"
    title = "The complaint's SLA policy does not allow pausing"


class NotOwner(Forbidden):
    slug = "not-complaint-owner"
    title = "Only the complaint's owner can hand it over"


class MissingField(Unprocessable):
    slug = "validation-error"
    title = "Request validation failed"


@dataclass(frozen=True)
class View:
    """What the answer depends on besides the row: the time and the reopen window."""

    now: datetime
    reopen_window: timedelta

    @classmethod
    def of(cls, settings: FeedbackSettings, now: datetime) -> View:
        return cls(now=now, reopen_window=timedelta(hours=settings.reopen_window_hours))


def reopen_until(c: Complaint, window: timedelta) -> datetime | None:
    if c.status not in sla.CLOSED_STATES:
        return None
    return (c.resolved_at or c.closed_at or c.created_at) + window


def allowed_actions(c: Complaint, view: View) -> list[Action]:
    paused = c.paused_at is not None
    until = reopen_until(c, view.reopen_window)
    result: list[Action] = []
    for action, table in TRANSITIONS.items():
        if c.status not in table:
            continue
        if action is Action.pause and (paused or not c.pausable):
            continue
        if action is Action.resume and not paused:
            continue
        if action is Action.reopen and until is not None and view.now > until:
            continue
        result.append(action)
    return result


def _clock(
    target: int | None, due: datetime, met: datetime | None, breached: bool, running: bool
) -> ClockOut:
    return ClockOut(
        target_minutes=target, due_at=due, met_at=met, breached=breached, running=running
    )


def to_out(c: Complaint, view: View, history: list[ComplaintAction] | None = None) -> ComplaintOut:
    paused = c.paused_at is not None
    return ComplaintOut(
        id=c.id,
        member_id=c.member_id,
        channel=c.channel,
        kind=c.kind,
        category=c.category,
        cause=c.cause,
        description=c.description,
        order_id=c.order_id,
        product_ref=c.product_ref,
        severity=c.severity,
        reported_severity=c.reported_severity,
        status=c.status,
        created_at=c.created_at,
        updated_at=c.updated_at,
        opened_by=c.opened_by,
        owner_id=c.owner_id,
        member_tier=c.member_tier,
        member_value_tier=c.member_value_tier,
        first_response_due_at=c.first_response_due_at,
        resolution_due_at=c.resolution_due_at,
        first_responded_at=c.first_responded_at,
        escalated_at=c.escalated_at,
        resolved_at=c.resolved_at,
        closed_at=c.closed_at,
        reopen_count=c.reopen_count,
        breached=c.breached,
        allowed_actions=allowed_actions(c, view),
        reopen_until=reopen_until(c, view.reopen_window),
        sla=SlaOut(
            policy_ids=list(c.sla_policy_ids),
            calendar_id=c.calendar_id,
            pausable=c.pausable,
            paused=paused,
            paused_at=c.paused_at,
            paused_seconds=c.paused_seconds,
            first_response=_clock(
                c.first_response_minutes,
                c.first_response_due_at,
                c.first_responded_at,
                c.first_response_breached_at is not None,
                c.first_responded_at is None and not paused,
            ),
            resolution=_clock(
                c.escalated_resolution_minutes
                if c.escalated_at is not None and c.escalated_resolution_minutes
                else c.resolution_minutes,
                c.resolution_due_at,
                c.resolved_at,
                c.resolution_breached_at is not None,
                c.status not in sla.CLOSED_STATES and not paused,
            ),
            breached=c.breached,
        ),
        history=(
            [
                HistoryEntry(
                    action=h.action,
                    from_status=h.from_status,
                    to_status=h.to_status,
                    actor=h.actor,
                    note=h.note,
                    details=h.details,
                    at=h.at,
                )
                for h in history
            ]
            if history is not None
            else None
        ),
    )


async def open_complaint(
    session: AsyncSession,
    settings: FeedbackSettings,
    data: ComplaintIn,
    now: datetime,
    *,
    opened_by: str | None = None,
    caller: Caller = INTERNAL,
) -> ComplaintOut:
    """Open with the SLA of ops' severity (``triage``), within the member's daily limit;
    409 ``member-erased`` for an erased member."""
    await erasure.refuse_if_erased(
        session, settings.erasure_key(), data.member_id, field="body.member_id"
    )
    await limits.check_daily_limit(session, settings, data.member_id, caller, now)
    severity, reported = triage.opening_severity(settings, data.severity, caller)
    member = await session.get(MemberProjection, data.member_id)
    applied = await sla.applicable_sla(
        session,
        settings,
        kind=data.kind.value,
        channel=data.channel.value,
        tier=member.tier if member else None,
        value_tier=member.value_tier if member else None,
        severity=severity,
    )
    clock = await sla.clock_for(session, applied.calendar_id)
    complaint = _new_complaint(data, severity, reported, member, applied, clock, now, opened_by)
    complaint.next_due_at = sla.next_due(complaint)
    session.add(complaint)
    session.add(
        ComplaintAction(
            complaint_id=complaint.id,
            action="open",
            from_status=None,
            to_status="open",
            actor=opened_by or f"member:{data.member_id}",
            note=None,
            details={"channel": complaint.channel, "sla_policy_ids": applied.policy_ids},
            at=now,
        )
    )
    await session.flush()
    await _publish_opened(session, complaint, now)
    return to_out(complaint, View.of(settings, now))


def _new_complaint(
    data: ComplaintIn,
    severity: str,
    reported: str | None,
    member: MemberProjection | None,
    applied: sla.AppliedSla,
    clock: Clock,
    now: datetime,
    opened_by: str | None,
) -> Complaint:
    """An open complaint with the member's tiers as they are now and the applied SLA's
    targets and deadlines (on the SLA calendar's working time)."""
    return Complaint(
        id=str(uuid.uuid4()),
        member_id=data.member_id,
        channel=data.channel.value,
        kind=data.kind.value,
        category=data.category,
        cause=data.cause,
        description=data.description,
        order_id=data.order_id,
        product_ref=data.product_ref,
        severity=severity,
        reported_severity=reported,
        status="open",
        created_at=now,
        updated_at=now,
        opened_by=opened_by,
        owner_id=None,
        handed_over=False,
        member_tier=member.tier if member else None,
        member_value_tier=member.value_tier if member else None,
        sla_policy_ids=applied.policy_ids,
        calendar_id=applied.calendar_id,
        pausable=applied.pausable,
        first_response_minutes=applied.first_response_minutes,
        resolution_minutes=applied.resolution_minutes,
        escalated_resolution_minutes=applied.escalated_resolution_minutes,
        goodwill_points=applied.goodwill_points,
        first_response_due_at=clock.add(now, applied.first_response_minutes * 60),
        resolution_due_at=clock.add(now, applied.resolution_minutes * 60),
        paused_seconds=0.0,
        cycle=0,
        reopen_count=0,
        breached=False,
    )


async def _publish_opened(session: AsyncSession, complaint: Complaint, now: datetime) -> None:
    await events.publish(
        session,
        events.COMPLAINT_OPENED,
        complaint.member_id,
        {
            "complaint_id": complaint.id,
            "member_id": complaint.member_id,
            "channel": complaint.channel,
            "kind": complaint.kind,
            "category": complaint.category,
            "cause": complaint.cause,
            "severity": complaint.severity,
            "reported_severity": complaint.reported_severity,
            "order_id": complaint.order_id,
            "opened_at": now.isoformat(),
            "first_response_due_at": complaint.first_response_due_at.isoformat(),
            "resolution_due_at": complaint.resolution_due_at.isoformat(),
        },
        time=now,
    )


async def get_complaint(session: AsyncSession, complaint_id: str, view: View) -> ComplaintOut:
    complaint = await session.get(Complaint, complaint_id)
    if complaint is None:
        raise ComplaintNotFound(f"No complaint with id {complaint_id!r}")
    return to_out(complaint, view, await repository.history(session, complaint_id))


def _illegal(c: Complaint, action: Action, view: View) -> IllegalTransition:
    allowed = [a.value for a in allowed_actions(c, view)]
    paused = " (paused)" if c.paused_at is not None else ""
    return IllegalTransition(
        f"Cannot {action.value} a complaint that is {c.status}{paused}; "
        f"allowed actions: {', '.join(allowed) or 'none'}",
        current_state=c.status,
        paused=c.paused_at is not None,
        allowed_actions=allowed,
    )


async def _resume(session: AsyncSession, c: Complaint, now: datetime) -> float:
    """Credit the paused working time back to every running clock; returns it (seconds)."""
    assert c.paused_at is not None
    clock = await sla.clock_for(session, c.calendar_id)
    paused_at = c.paused_at
    credited = clock.working_seconds(paused_at, now)
    if c.first_responded_at is None and c.first_response_due_at > paused_at:
        remaining = clock.working_seconds(paused_at, c.first_response_due_at)
        c.first_response_due_at = clock.add(now, remaining)
    if c.status not in sla.CLOSED_STATES and c.resolution_due_at > paused_at:
        remaining = clock.working_seconds(paused_at, c.resolution_due_at)
        c.resolution_due_at = clock.add(now, remaining)
    c.paused_seconds += credited
    c.paused_at = None
    return credited


def _event_data(
    c: Complaint, action: Action, actor: str, note: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "complaint_id": c.id,
        "member_id": c.member_id,
        "status": c.status,
        "action": action.value,
        "actor": actor,
        "owner_id": c.owner_id,
        "note": note,
        "category": c.category,
        "cause": c.cause,
        "at": now.isoformat(),
    }


async def take_action(
    session: AsyncSession,
    settings: FeedbackSettings,
    complaint_id: str,
    data: ActionIn,
    actor: str,
    now: datetime,
) -> ComplaintOut:
    """One step of the state machine (``transitions``): checked against the complaint's
    status, its owner taken care of, its clocks moved, recorded in its history and
    published; resolving schedules the post-resolution follow-up."""
    c = await session.get(Complaint, complaint_id, with_for_update=True)
    if c is None:
        raise ComplaintNotFound(f"No complaint with id {complaint_id!r}")
    action = data.action
    view = View.of(settings, now)
    _check_allowed(c, action, view)
    step = Step(now=now, from_status=c.status, details=_take_ownership(c, data, actor))
    if c.paused_at is not None and (action is Action.resume or action in RESUMING):
        step.details["credited_seconds"] = await _resume(session, c, now)
    if data.cause:
        c.cause = data.cause
    if data.severity is not None:
        change = await triage.set_severity(session, settings, c, data.severity, now)
        if change is not None:
            step.details["severity"] = change
    effect = EFFECTS.get(action)
    event_type = await effect(session, c, step) if effect is not None else None
    c.status = TRANSITIONS[action][step.from_status]
    c.updated_at = now
    c.next_due_at = sla.next_due(c)
    session.add(
        ComplaintAction(
            complaint_id=c.id,
            action=action.value,
            from_status=step.from_status,
            to_status=c.status,
            actor=actor,
            note=data.note,
            details=step.details,
            at=now,
        )
    )
    if event_type is not None:
        payload = _event_data(c, action, actor, data.note, now)
        if event_type == events.COMPLAINT_RESOLVED:
            payload["first_contact_resolution"] = is_first_contact_resolution(c)
            payload["resolved_at"] = now.isoformat()
        await events.publish(session, event_type, c.member_id, payload, time=now)
    if action is Action.resolve:
        await follow_ups.ensure_follow_up(
            session,
            member_id=c.member_id,
            reason=follow_ups.POST_RESOLUTION,
            dedupe_key=f"post_resolution:{c.id}:{c.cycle}",
            due_at=now + timedelta(days=settings.follow_up_after_resolution_days),
            owner_id=c.owner_id,
            complaint_id=c.id,
            now=now,
        )
    await session.flush()
    return to_out(c, view, await repository.history(session, c.id))


def _check_allowed(c: Complaint, action: Action, view: View) -> None:
    """409 if the action is not allowed now: past the reopen window, a pause the SLA
    policy forbids, or not a transition from the complaint's status."""
    until = reopen_until(c, view.reopen_window)
    if action is Action.reopen and until is not None and view.now > until:
        raise ReopenWindowExpired(
            f"Complaint {c.id} could be reopened until {until.isoformat()}",
            current_state=c.status,
            allowed_actions=[a.value for a in allowed_actions(c, view)],
            reopen_deadline=until.isoformat(),
        )
    if action not in allowed_actions(c, view):
        if action is Action.pause and c.status in TRANSITIONS[action] and not c.pausable:
            raise PauseNotAllowed(
                "This complaint's SLA policy does not let its clocks pause",
                current_state=c.status,
                allowed_actions=[a.value for a in allowed_actions(c, view)],
            )
        raise _illegal(c, action, view)


def _take_ownership(c: Complaint, data: ActionIn, actor: str) -> dict[str, Any]:
    """A hand-over (by the owner, to ``data.to``) or first-contact ownership (whoever first
    takes the complaint owns it); the details the history entry records."""
    if data.action is Action.hand_over:
        if not data.to:
            raise MissingField(
                "hand_over needs `to`: the agent who takes the complaint over",
                errors=[
                    {"field": "body.to", "message": "required for hand_over", "type": "missing"}
                ],
            )
        if c.owner_id is not None and c.owner_id != actor:
            raise NotOwner(
                f"Complaint {c.id} is owned by {c.owner_id}; only the owner hands it over",
                owner_id=c.owner_id,
            )
        details: dict[str, Any] = {"from_owner": c.owner_id, "to_owner": data.to}
        if c.owner_id is not None:
            c.handed_over = True
        c.owner_id = data.to
        return details
    if c.owner_id is None and data.action not in (Action.pause, Action.resume):
        c.owner_id = actor
        return {"owner_assigned": actor}
    return {}


def is_first_contact_resolution(c: Complaint) -> bool:
    """Resolved by the first owner, without escalation or hand-over, never reopened."""
    return c.escalated_at is None and not c.handed_over and c.reopen_count == 0


async def list_complaints(
    session: AsyncSession,
    view: View,
    *,
    status: str | None,
    member_id: str | None,
    limit: int,
    cursor: str | None,
    breached: bool | None = None,
    owner: str | None = None,
    due_before: datetime | None = None,
) -> ComplaintPage:
    rows = await repository.page(
        session,
        repository.Filters(status, member_id, breached, owner, due_before),
        after=cursors.decode(cursor) if cursor else None,
        limit=limit + 1,
    )
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = cursors.encode(last.created_at, last.id) if last is not None else None
    return ComplaintPage(items=[to_out(c, view) for c in rows[:limit]], next_cursor=next_cursor)
