"""The member's own complaints: what a member token reads (the list, the answer to opening one)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from feedback.complaints import service
from feedback.complaints.schemas import (
    ComplaintOut,
    MemberComplaintOut,
    MemberComplaintPage,
)

_FIELDS = set(MemberComplaintOut.model_fields)


def for_member(complaint: ComplaintOut) -> MemberComplaintOut:
    return MemberComplaintOut.model_validate(complaint.model_dump(include=_FIELDS))


async def member_complaints(
    session: AsyncSession, view: service.View, member_id: str, *, limit: int, cursor: str | None
) -> MemberComplaintPage:
    """Newest first, cursor paged (the same cursor as the ops queue's)."""
    page = await service.list_complaints(
        session, view, status=None, member_id=member_id, limit=limit, cursor=cursor
    )
    return MemberComplaintPage(
        items=[for_member(c) for c in page.items], next_cursor=page.next_cursor
    )
