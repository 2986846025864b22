"""The complaints' queries: a page of the queue, a complaint's history, a member's open count."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.complaints.models import Complaint, ComplaintAction
from feedback.complaints.transitions import ACTIVE_STATES


@dataclass(frozen=True)
class Filters:
    """The queue's filters; None (or empty) for any."""

    status: str | None = None
    member_id: str | None = None
    breached: bool | None = None
    owner: str | None = None
    due_before: datetime | None = None


async def page(
    session: AsyncSession,
    filters: Filters,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Complaint]:
    """Newest first, after the (created_at, id) position ``after`` if given."""
    query = select(Complaint).order_by(Complaint.created_at.desc(), Complaint.id.desc())
    if filters.status:
        query = query.where(Complaint.status == filters.status)
    if filters.member_id:
        query = query.where(Complaint.member_id == filters.member_id)
    if filters.breached is not None:
        query = query.where(Complaint.breached.is_(filters.breached))
    if filters.owner:
        query = query.where(Complaint.owner_id == filters.owner)
    if filters.due_before is not None:
        query = query.where(
            Complaint.next_due_at.is_not(None), Complaint.next_due_at < filters.due_before
        )
    if after is not None:
        query = query.where(tuple_(Complaint.created_at, Complaint.id) < tuple_(*after))
    return list((await session.execute(query.limit(limit))).scalars())


async def history(session: AsyncSession, complaint_id: str) -> list[ComplaintAction]:
    return list(
        (
            await session.execute(
                select(ComplaintAction)
                .where(ComplaintAction.complaint_id == complaint_id)
                .order_by(ComplaintAction.at, ComplaintAction.id)
            )
        ).scalars()
    )


async def open_count(session: AsyncSession, member_id: str) -> int:
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(Complaint)
                .where(Complaint.member_id == member_id, Complaint.status.in_(ACTIVE_STATES))
            )
        ).scalar_one()
    )
