"""The complaint's state machine as tables: which action goes from which status to which
(``TRANSITIONS``), and what each action does to the complaint's clocks besides
(``EFFECTS``: the SLA timestamps, breaches, deadlines and the event it publishes).
``service.take_action`` checks, looks both up and records the step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from feedback import events
from feedback.complaints.models import Complaint
from feedback.complaints.schemas import Action
from feedback.sla import service as sla

ACTIVE_STATES = ("open", "acknowledged", "in_progress", "escalated")

# action -> {from status: to status}. pause/resume/respond/hand_over keep the status.
TRANSITIONS: dict[Action, dict[str, str]] = {
    Action.acknowledge: {"open": "acknowledged"},
    Action.respond: {
        "open": "acknowledged",
        "acknowledged": "acknowledged",
        "in_progress": "in_progress",
        "escalated": "escalated",
    },
    Action.start: {"acknowledged": "in_progress"},
    Action.escalate: {"acknowledged": "escalated", "in_progress": "escalated"},
    Action.resolve: {
        "acknowledged": "resolved",
        "in_progress": "resolved",
        "escalated": "resolved",
    },
    Action.close: {"resolved": "closed"},
    Action.reopen: {"resolved": "in_progress", "closed": "in_progress"},
    Action.hand_over: {s: s for s in ACTIVE_STATES},
    Action.pause: {s: s for s in ("acknowledged", "in_progress", "escalated")},
    Action.resume: {s: s for s in ("acknowledged", "in_progress", "escalated")},
}
# actions that change the status; taken on a paused complaint, they resume its clocks first
RESUMING = frozenset({Action.start, Action.escalate, Action.resolve})


@dataclass
class Step:
    """One action being taken: when, from which status, and the details its history entry
    records (an effect adds to them)."""

    now: datetime
    from_status: str
    details: dict[str, Any] = field(default_factory=dict)


Effect = Callable[[AsyncSession, Complaint, Step], Awaitable[str | None]]


async def _pause(session: AsyncSession, c: Complaint, step: Step) -> str | None:
    c.paused_at = step.now
    return None


async def _first_response(session: AsyncSession, c: Complaint, step: Step) -> str | None:
    """Acknowledge or respond: the first one stops the first-response clock (a breach if
    late); acknowledging an open complaint is published."""
    if c.first_responded_at is not None:
        return None
    c.first_responded_at = step.now
    if step.now > c.first_response_due_at:
        await sla.record_breach(session, c, sla.FIRST_RESPONSE, step.now)
    return events.COMPLAINT_ACKNOWLEDGED if step.from_status == "open" else None


async def _escalate(session: AsyncSession, c: Complaint, step: Step) -> str | None:
    c.escalated_at = step.now
    if c.escalated_resolution_minutes:
        clock = await sla.clock_for(session, c.calendar_id)
        c.resolution_due_at = clock.add(step.now, c.escalated_resolution_minutes * 60)
        step.details["resolution_due_at"] = c.resolution_due_at.isoformat()
    return events.COMPLAINT_ESCALATED


async def _resolve(session: AsyncSession, c: Complaint, step: Step) -> str | None:
    c.resolved_at = step.now
    c.first_resolved_at = c.first_resolved_at or step.now
    if c.first_responded_at is None:
        c.first_responded_at = step.now
    if step.now > c.resolution_due_at and c.resolution_breached_at is None:
        await sla.record_breach(session, c, sla.RESOLUTION, step.now)
    return events.COMPLAINT_RESOLVED


async def _close(session: AsyncSession, c: Complaint, step: Step) -> str | None:
    c.closed_at = step.now
    return events.COMPLAINT_CLOSED


async def _reopen(session: AsyncSession, c: Complaint, step: Step) -> str | None:
    """A new cycle: the resolution clock starts again from now."""
    clock = await sla.clock_for(session, c.calendar_id)
    c.cycle += 1
    c.reopen_count += 1
    c.resolved_at = None
    c.closed_at = None
    c.resolution_breached_at = None
    c.resolution_due_at = clock.add(step.now, (c.resolution_minutes or 0) * 60)
    step.details["resolution_due_at"] = c.resolution_due_at.isoformat()
    return events.COMPLAINT_REOPENED


# action -> what it does besides the status change; returns the event type it publishes.
# start, hand_over and resume change nothing else (hand_over's owner and resume's credit
# are taken care of before, for every action).
EFFECTS: dict[Action, Effect] = {
    Action.pause: _pause,
    Action.acknowledge: _first_response,
    Action.respond: _first_response,
    Action.escalate: _escalate,
    Action.resolve: _resolve,
    Action.close: _close,
    Action.reopen: _reopen,
}
