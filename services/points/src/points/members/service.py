"""Enrolment and membership status."""

import secrets
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import DateTime, String, bindparam, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared import erasure
from loyalty_shared.db import CompiledStatement, driver_connection
from loyalty_shared.problems import Unprocessable
from points import events
from points.actions.models import check_ins, interactions
from points.errors import MemberNotFound
from points.ledger import service as ledger
from points.ledger.models import Balance
from points.members.models import Member
from points.members.schemas import (
    BadgeOut,
    BalanceOut,
    ExpiringPoints,
    MemberIn,
    MemberOut,
    MemberStatus,
    NextTier,
)
from points.orders.models import orders
from points.rules_cache import RulesCache
from points.settings import PointsSettings
from points.tiers.badges import MemberFacts, earned_badges
from points.tiers.schemas import TierLadderIn
from points.tiers.service import (
    entry_tier,
    growth_window_start,
    load_ladder,
    next_evaluation_at,
    tier_status,
)


class UnknownReferralCode(Unprocessable):
    slug = "unknown-referral-code"
    title = "Unknown referral code"


_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_referral_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


async def _referrer(session: AsyncSession, data: MemberIn) -> str | None:
    """The member whose referral code the new member gave (422 for an unknown one)."""
    if not data.referral_code:
        return None
    from points.referrals.service import referrer_for_code

    referred_by = await referrer_for_code(session, data.referral_code)
    if referred_by is None or referred_by == data.member_id:
        raise UnknownReferralCode(
            f"No member has the referral code {data.referral_code!r}",
            errors=[{"field": "body.referral_code", "message": "unknown referral code"}],
        )
    return referred_by


async def enrol(
    session: AsyncSession,
    settings: PointsSettings,
    data: MemberIn,
    *,
    cache: RulesCache | None = None,
) -> tuple[MemberOut, bool]:
    """Enrol a member; the same member id again returns the existing member (created=False).

    The member starts in the ladder's entry tier with its first tier evaluation scheduled.
    An erased member's id is not given out again (409 ``member-erased``): the tombstone
    keeps it from coming back.
    """
    await erasure.refuse_if_erased(
        session, settings.erasure_key(), data.member_id, field="body.member_id"
    )
    now = datetime.now(UTC)
    ladder = await cache.ladder(session, now) if cache is not None else await load_ladder(session)
    referred_by = await _referrer(session, data)
    inserted = (
        await session.execute(
            insert(Member)
            .values(
                member_id=data.member_id,
                name=data.name,
                email=str(data.email) if data.email else None,
                phone=data.phone,
                birthday=data.birthday,
                timezone=data.timezone or settings.default_timezone,
                referral_code=new_referral_code(),
                referred_by=referred_by,
                enrolled_at=now,
                tier=entry_tier(ladder).code,
                next_evaluation_at=next_evaluation_at(ladder, now, now),
            )
            .on_conflict_do_nothing(index_elements=[Member.member_id])
            .returning(Member.member_id, Member.tier, Member.referral_code, Member.enrolled_at)
        )
    ).first()
    if inserted is None:
        member = (
            await session.execute(select(Member).where(Member.member_id == data.member_id))
        ).scalar_one()
        return (
            MemberOut(
                member_id=member.member_id,
                tier=member.tier,
                referral_code=member.referral_code,
                enrolled_at=member.enrolled_at,
            ),
            False,
        )
    await session.execute(insert(Balance).values(member_id=data.member_id))
    await events.publish(
        session,
        events.points_event(
            events.MEMBER_ENROLLED,
            data.member_id,
            {
                "member_id": data.member_id,
                "tier": inserted.tier,
                "enrolled_at": inserted.enrolled_at.isoformat(),
                "timezone": data.timezone or settings.default_timezone,
            },
            time=now,
        ),
    )
    return (
        MemberOut(
            member_id=inserted.member_id,
            tier=inserted.tier,
            referral_code=inserted.referral_code,
            enrolled_at=inserted.enrolled_at,
        ),
        True,
    )


def _status_statement() -> CompiledStatement:
    """Built once (GET /v1/members/{id} is what every app screen and checkout page reads).

    One statement, so one round trip and one snapshot: the member, its balance, the counts
    the badges need, and the next expiry dates (``ledger.expiring_soon_statement``) as an
    array of (points, expires_at) records in date order, NULL when nothing expires.
    """
    member_id = bindparam("p_member_id", type_=String)
    count = func.count
    soon = ledger.expiring_soon_statement(
        member_id, bindparam("p_now"), bindparam("p_limit")
    ).subquery("soon")
    expiring_soon = (
        select(
            func.array_agg(
                aggregate_order_by(func.row(soon.c.points, soon.c.expires_at), soon.c.expires_at)
            )
        )
        .scalar_subquery()
        .label("expiring_soon")
    )
    member_row = (
        select(
            Member.member_id,
            Member.tier,
            Member.enrolled_at,
            Balance.available,
            Balance.pending,
            Balance.debt,
            Balance.lifetime_earned,
            ledger.window_growth(bindparam("p_window_start", type_=DateTime(timezone=True))).label(
                "rolling"
            ),
            select(count())
            .select_from(orders)
            .where(orders.c.member_id == member_id)
            .scalar_subquery()
            .label("orders_count"),
            select(count())
            .select_from(interactions)
            .where(interactions.c.member_id == member_id, interactions.c.type == "review")
            .scalar_subquery()
            .label("reviews_count"),
            select(count())
            .select_from(check_ins)
            .where(check_ins.c.member_id == member_id)
            .scalar_subquery()
            .label("check_in_days"),
            expiring_soon,
        )
        .join(Balance, Balance.member_id == Member.member_id)
        .where(Member.member_id == member_id, Member.erased_at.is_(None))
    )
    return CompiledStatement(member_row)


_MEMBER_STATUS = _status_statement()


async def status(
    session: AsyncSession,
    settings: PointsSettings,
    member_id: str,
    *,
    now: datetime | None = None,
    cache: RulesCache | None = None,
) -> MemberStatus:
    now = now or datetime.now(UTC)
    ladder = await cache.ladder(session, now) if cache is not None else await load_ladder(session)
    return await status_on(await driver_connection(session), settings, ladder, member_id, now)


async def status_on(
    conn: asyncpg.Connection,
    settings: PointsSettings,
    ladder: TierLadderIn,
    member_id: str,
    now: datetime | None = None,
) -> MemberStatus:
    """The member status in one statement on ``conn`` (a transaction's, or autocommit)."""
    now = now or datetime.now(UTC)
    row = await _MEMBER_STATUS.fetchrow(
        conn,
        {
            "p_member_id": member_id,
            "p_window_start": growth_window_start(ladder, now),
            "p_now": now,
            "p_limit": settings.expiring_soon_limit,
        },
    )
    if row is None:
        raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
    soon = row["expiring_soon"] or ()
    growth = max(0, int(row["rolling"]))
    enrolled_at = row["enrolled_at"]
    lifetime_earned = row["lifetime_earned"]
    tier = tier_status(ladder, row["tier"], growth, enrolled_at, now)
    badges = earned_badges(
        MemberFacts(
            enrolled_at=enrolled_at,
            orders_count=row["orders_count"],
            reviews_count=row["reviews_count"],
            check_in_days=row["check_in_days"],
            lifetime_earned=lifetime_earned,
        ),
        now,
    )
    return MemberStatus(
        member_id=row["member_id"],
        tier=row["tier"],
        tier_name=tier.tier.name,
        enrolled_at=enrolled_at,
        balance=BalanceOut(
            available=row["available"],
            pending=row["pending"],
            debt=row["debt"],
            expiring_soon=[
                ExpiringPoints(points=int(points), expires_at=expires_at)
                for points, expires_at in soon
            ],
        ),
        lifetime_earned=lifetime_earned,
        growth_value=growth,
        next_tier=NextTier(
            code=tier.next_tier.code,
            name=tier.next_tier.name,
            growth_value_missing=tier.growth_value_missing,
        )
        if tier.next_tier
        else None,
        tier_held_until=tier.tier_held_until,
        benefits=tier.benefits,
        badges=[BadgeOut(code=b.code, name=b.name, description=b.description) for b in badges],
    )
