"""Goodwill points (feedback's ``complaint.goodwill_granted``), capped where they are minted.

Feedback grants goodwill points when a complaint's SLA clock is breached, as much as the
matching SLA policy says. Whatever feedback sends, one member is credited at most
``goodwill_monthly_cap`` goodwill points per local calendar month (default 1000): a grant
over it is cut to what is left (reason ``capped_monthly``), a grant with nothing left is
not credited. The entry's ``details`` (and the ``points.earned`` event's ``breakdown``)
keep what was asked and why it was cut (docs/security.md, "Per-member caps").
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from points.actions.credit import ActionMember, credit
from points.actions.service import periods
from points.ledger import models as lm
from points.ledger.models import entries
from points.settings import PointsSettings

log = structlog.get_logger("points.actions.handlers")

SOURCE = "goodwill"


async def credited_in_month(session: AsyncSession, member: ActionMember, at: datetime) -> int:
    """Goodwill points credited to the member in the local month of ``at``."""
    p = periods(at, member.timezone)
    total = await session.execute(
        select(func.coalesce(func.sum(entries.c.points + entries.c.pending_delta), 0)).where(
            entries.c.member_id == member.locked.member_id,
            entries.c.source_type == SOURCE,
            entries.c.entry_type == lm.EARN,
            entries.c.occurred_at >= p.month_start,
            entries.c.occurred_at < p.month_end,
        )
    )
    return int(total.scalar_one())


def within_cap(requested: int, already: int, cap: int) -> tuple[int, str]:
    """(points to credit, reason): all of them, or what the month's cap leaves (0 = no cap)."""
    if cap <= 0 or already + requested <= cap:
        return requested, "granted"
    return max(0, cap - already), "capped_monthly"


async def credit_goodwill(
    session: AsyncSession,
    settings: PointsSettings,
    member: ActionMember,
    *,
    grant_id: str,
    requested: int,
    reason: str | None,
    complaint_id: str | None,
    at: datetime,
) -> int:
    """Credit a grant within the member's monthly cap (the caller holds the balance lock)."""
    already = await credited_in_month(session, member, at)
    points, why = within_cap(requested, already, settings.goodwill_monthly_cap)
    if points <= 0:
        log.info(
            "goodwill_capped", member_id=member.locked.member_id, grant_id=grant_id, asked=requested
        )
        return 0
    await credit(
        session,
        settings,
        member,
        action="goodwill",
        points=points,
        growth=0,
        key=f"goodwill:{grant_id}",
        source_id=grant_id,
        at=at,
        reason=reason or "complaint goodwill",
        details={"complaint_id": complaint_id, "requested": requested, "reason": why},
        source=SOURCE,
    )
    return points
