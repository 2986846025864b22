from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import NotFound
from segmentation.profiles.models import Profile
from segmentation.profiles.schemas import CLVOut, LoyaltyOut, ProfileOut, ProfilePage, RFMOut
from segmentation.segments.models import SegmentMember


class ProfileNotFound(NotFound):
    slug = "profile-not-found"
    title = "Profile not found"


def to_out(p: Profile, now: datetime | None = None) -> ProfileOut:
    now = now or datetime.now(UTC)
    cents = Decimal("0.01")
    return ProfileOut(
        member_id=p.member_id,
        enrolled_at=p.enrolled_at,
        timezone=p.timezone,
        tier=p.tier,
        order_count=p.order_count,
        total_spend=p.total_spend,
        gross_spend=p.gross_spend,
        refunded_amount=p.refunded_amount,
        refund_count=p.refund_count,
        average_order_value=(p.total_spend / p.order_count).quantize(cents)
        if p.order_count
        else None,
        first_order_at=p.first_order_at,
        last_order_at=p.last_order_at,
        days_since_last_order=(now - p.last_order_at).days if p.last_order_at else None,
        coupon_order_count=p.coupon_order_count,
        coupon_share=round(p.coupon_order_count / p.order_count, 4) if p.order_count else None,
        discount_total=p.discount_total,
        categories=list(p.categories),
        channels=list(p.channels),
        points_earned=p.points_earned,
        points_redeemed=p.points_redeemed,
        points_expired=p.points_expired,
        points_balance=p.points_balance,
        reviews=p.reviews,
        shares=p.shares,
        check_ins=p.check_ins,
        logins=p.logins,
        page_views=p.page_views,
        activities=p.activities,
        referrals=p.referrals,
        complaints=p.complaints,
        surveys=p.surveys,
        nps_last=p.nps_last,
        csat_avg=(p.csat_sum / p.csat_count).quantize(cents) if p.csat_count else None,
        tags=sorted(set(p.manual_tags) | set(p.rule_tags)),
        manual_tags=list(p.manual_tags),
        rule_tags=list(p.rule_tags),
        scores_as_of=p.scores_as_of,
        rfm=RFMOut(r=p.rfm_r, f=p.rfm_f, m=p.rfm_m, segment=p.rfm_segment),
        value_tier=p.value_tier,
        lifecycle=p.lifecycle,
        median_gap_days=p.median_gap_days,
        value_group=p.value_group,
        behaviour_group=p.behaviour_group,
        loyalty=LoyaltyOut(
            index=p.loyalty_index,
            type=p.loyalty_type,
            reasons=list(p.loyalty_reasons or []),
            indicators=p.loyalty_indicators,
        ),
        strategies=list(p.strategies),
        clv=CLVOut(
            p_alive=p.p_alive,
            expected_purchases_90d=p.expected_purchases_90d,
            expected_value=p.expected_value,
            churn_risk=round(1 - p.p_alive, 6) if p.p_alive is not None else None,
        ),
        updated_at=p.updated_at,
    )


async def get_profile(session: AsyncSession, member_id: str) -> ProfileOut:
    profile = await session.get(Profile, member_id)
    if profile is None:
        raise ProfileNotFound(f"No profile for member {member_id!r} yet", member_id=member_id)
    return to_out(profile)


async def list_profiles(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    value_tier: str | None,
    segment: str | None,
) -> ProfilePage:
    filters = []
    if value_tier:
        filters.append(Profile.value_tier == value_tier)
    if segment:
        filters.append(
            Profile.member_id.in_(
                select(SegmentMember.member_id).where(SegmentMember.segment_id == segment)
            )
        )
    total = (
        await session.execute(select(func.count()).select_from(Profile).where(*filters))
    ).scalar_one()
    stmt = select(Profile).where(*filters).order_by(Profile.member_id).limit(limit + 1)
    if cursor:
        stmt = stmt.where(Profile.member_id > cursor)
    rows = list((await session.execute(stmt)).scalars())
    next_cursor = rows[limit - 1].member_id if len(rows) > limit else None
    now = datetime.now(UTC)
    return ProfilePage(
        items=[to_out(p, now) for p in rows[:limit]], next_cursor=next_cursor, total=total
    )


_LOCK_FOR_BULK_WRITE = text("LOCK TABLE profiles IN EXCLUSIVE MODE")


async def lock_profiles_for_bulk_write(session: AsyncSession) -> None:
    """Before a statement that writes many profiles (strategies, rule tags, a recompute):
    wait for the transactions writing profiles now, and keep others from writing any
    until this transaction ends (plain reads go on).

    A consumer batch locks its members' profiles in the order of its events; a bulk
    UPDATE in another order would wait for one of them while holding rows the batch
    wants next: a deadlock. Taken before the bulk write's first row lock, this lock is
    the first thing it waits for, while it holds nothing a consumer needs, so the two
    cannot wait for each other. ``EXCLUSIVE`` mode conflicts with row locks too
    (``SELECT ... FOR UPDATE``), not with ``SELECT``. Re-entrant within a transaction.
    """
    await session.execute(_LOCK_FOR_BULK_WRITE)
