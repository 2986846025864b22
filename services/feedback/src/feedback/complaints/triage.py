"""A complaint's severity: whose word sets its SLA (docs/security.md, "Severity").

The severity picks SLA policies, and so the clocks and the goodwill points a breach
grants. A member, or a storefront speaking for one, may say how severe it is: that is kept
as ``reported_severity``, a hint for the agent, and the complaint opens with the default
severity (``FEEDBACK_DEFAULT_SEVERITY``). Ops (and the service itself) set the severity:
when opening, or later with any action's ``severity``. A new severity matches the policies
again; each clock still running keeps the working time already spent on it and gets the
new target (a clock already met or breached stays as it is). The complaint keeps its
business calendar.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from feedback.complaints.schemas import Severity
from feedback.settings import FeedbackSettings
from feedback.sla import service as sla
from feedback.sla.calendar import Clock
from loyalty_shared.caller import MEMBER, STOREFRONT, Caller

if TYPE_CHECKING:
    from feedback.complaints.models import Complaint


def opening_severity(
    settings: FeedbackSettings, given: Severity | None, caller: Caller
) -> tuple[str, str | None]:
    """(the severity the complaint opens with, the severity reported by a member or shop)."""
    if caller.scope in (MEMBER, STOREFRONT):
        return settings.default_severity, given.value if given else None
    return (given.value if given else settings.default_severity), None


def retimed(
    clock: Clock, ref: datetime, due: datetime, old_minutes: int, new_minutes: int
) -> datetime:
    """A running clock's deadline for a new target: the working time spent (the old target
    less what was left at ``ref``) counts against the new one."""
    spent = old_minutes * 60 - clock.working_seconds(ref, due)
    return clock.add(ref, max(0.0, new_minutes * 60 - spent))


async def set_severity(
    session: AsyncSession,
    settings: FeedbackSettings,
    c: Complaint,
    severity: Severity,
    now: datetime,
) -> dict[str, str] | None:
    """Ops set the complaint's severity: policies matched again, running clocks re-timed.
    Returns the change for the action's history (None: the severity was already that)."""
    if severity.value == c.severity:
        return None
    applied = await sla.applicable_sla(
        session,
        settings,
        kind=c.kind,
        channel=c.channel,
        tier=c.member_tier,
        value_tier=c.member_value_tier,
        severity=severity.value,
    )
    clock = await sla.clock_for(session, c.calendar_id)
    ref = c.paused_at or now  # a paused clock spends nothing until it resumes
    if c.first_responded_at is None and c.first_response_breached_at is None:
        c.first_response_due_at = retimed(
            clock,
            ref,
            c.first_response_due_at,
            c.first_response_minutes or applied.first_response_minutes,
            applied.first_response_minutes,
        )
    if c.status not in sla.CLOSED_STATES and c.resolution_breached_at is None:
        escalated = c.escalated_at is not None
        old = (escalated and c.escalated_resolution_minutes) or c.resolution_minutes
        new = (escalated and applied.escalated_resolution_minutes) or applied.resolution_minutes
        c.resolution_due_at = retimed(clock, ref, c.resolution_due_at, old or new, new)
    c.sla_policy_ids = applied.policy_ids
    c.first_response_minutes = applied.first_response_minutes
    c.resolution_minutes = applied.resolution_minutes
    c.escalated_resolution_minutes = applied.escalated_resolution_minutes
    c.goodwill_points = applied.goodwill_points
    change = {"from": c.severity, "to": severity.value}
    c.severity = severity.value
    return change
