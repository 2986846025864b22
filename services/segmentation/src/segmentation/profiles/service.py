from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import NotFound
from segmentation.profiles.models import Profile
from segmentation.profiles.schemas import ProfileOut


class ProfileNotFound(NotFound):
    slug = "profile-not-found"
    title = "Profile not found"


async def get_profile(session: AsyncSession, member_id: str) -> ProfileOut:
    profile = (
        await session.execute(select(Profile).where(Profile.member_id == member_id))
    ).scalar_one_or_none()
    if profile is None:
        raise ProfileNotFound(f"No profile for member {member_id!r} yet", member_id=member_id)
    aov = (
        (profile.total_spend / profile.order_count).quantize(Decimal("0.01"))
        if profile.order_count
        else None
    )
    return ProfileOut(
        member_id=profile.member_id,
        enrolled_at=profile.enrolled_at,
        tier=profile.tier,
        order_count=profile.order_count,
        total_spend=profile.total_spend,
        average_order_value=aov,
        first_order_at=profile.first_order_at,
        last_order_at=profile.last_order_at,
        points_earned=profile.points_earned,
        updated_at=profile.updated_at,
    )
