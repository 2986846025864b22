"""The service view of a member: what feedback knows and holds about them."""

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.complaints.repository import open_count
from feedback.followups.models import FollowUp
from feedback.members.models import MemberProjection
from feedback.members.schemas import MemberServiceView


async def member_view(session: AsyncSession, member_id: str) -> MemberServiceView:
    projection = await session.get(MemberProjection, member_id)
    pending = (
        await session.execute(
            select(func.count())
            .select_from(FollowUp)
            .where(FollowUp.member_id == member_id, FollowUp.status == "pending")
        )
    ).scalar_one()
    return MemberServiceView(
        member_id=member_id,
        tier=projection.tier if projection else None,
        value_tier=projection.value_tier if projection else None,
        open_complaints=await open_count(session, member_id),
        pending_follow_ups=int(pending),
    )
