"""How many complaints a member may open (docs/security.md, "Per-member caps").

A member token, or a storefront speaking for a member, opens at most
``complaints_daily_limit`` complaints per member in any 24 hours (default 5); the next is
refused with 429 ``complaint-limit-reached``, saying when one may be opened again. Ops and
admins (who take complaints on the phone and in stores) are not held by it, and complaints
the service opens itself (a detractor's survey answer) are not counted. Each complaint can
breach an SLA and so grant goodwill points: the limit bounds what one member can set off.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.complaints.models import Complaint
from feedback.settings import FeedbackSettings
from loyalty_shared.caller import MEMBER, STOREFRONT, Caller
from loyalty_shared.problems import ProblemError

WINDOW = timedelta(hours=24)


class ComplaintLimitReached(ProblemError):
    slug = "complaint-limit-reached"
    status = 429
    title = "This member has opened as many complaints as a day allows"


async def check_daily_limit(
    session: AsyncSession,
    settings: FeedbackSettings,
    member_id: str,
    caller: Caller,
    now: datetime,
) -> None:
    """Refuse the member's next self-service complaint when the last 24 hours hold the limit.

    The member's complaints are counted under a transaction-scoped advisory lock on the
    member, so two complaints sent at once cannot both take the last place.
    """
    limit = settings.complaints_daily_limit
    if limit <= 0 or caller.scope not in (MEMBER, STOREFRONT):
        return
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"complaints:{member_id}"},
    )
    since = now - WINDOW
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(Complaint.created_at)).where(
                Complaint.member_id == member_id,
                Complaint.created_at > since,
                Complaint.opened_by.is_(None),  # self-service, not ops or the service itself
            )
        )
    ).one()
    if count < limit:
        return
    retry_after = int(((oldest + WINDOW) - now).total_seconds())
    raise ComplaintLimitReached(
        f"Member {member_id!r} has opened {count} complaints in the last 24 hours, the most "
        f"a member can open there; another can be opened in {retry_after} seconds, or by "
        "phone or in a store",
        reason="daily_limit",
        limit=limit,
        window_hours=24,
        retry_after_seconds=retry_after,
    )
