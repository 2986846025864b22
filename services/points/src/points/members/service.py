"""Enrolment and membership status."""

import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from points import events
from points.errors import MemberNotFound
from points.ledger import service as ledger
from points.ledger.models import Balance
from points.members.models import Member
from points.members.schemas import (
    BalanceOut,
    ExpiringPoints,
    MemberIn,
    MemberOut,
    MemberStatus,
)
from points.settings import PointsSettings

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_referral_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


async def enrol(
    session: AsyncSession, settings: PointsSettings, data: MemberIn
) -> tuple[MemberOut, bool]:
    """Enrol a member; the same member id again returns the existing member (created=False)."""
    now = datetime.now(UTC)
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
                referred_by=None,
                enrolled_at=now,
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


async def status(
    session: AsyncSession,
    settings: PointsSettings,
    member_id: str,
    *,
    now: datetime | None = None,
) -> MemberStatus:
    row = (
        await session.execute(
            select(Member.member_id, Member.tier, Member.enrolled_at, Balance)
            .join(Balance, Balance.member_id == Member.member_id)
            .where(Member.member_id == member_id)
        )
    ).first()
    if row is None:
        raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
    balance: Balance = row.Balance
    soon = await ledger.expiring_soon(
        session, member_id, now or datetime.now(UTC), settings.expiring_soon_limit
    )
    return MemberStatus(
        member_id=row.member_id,
        tier=row.tier,
        enrolled_at=row.enrolled_at,
        balance=BalanceOut(
            available=balance.available,
            pending=balance.pending,
            debt=balance.debt,
            expiring_soon=[ExpiringPoints(points=p, expires_at=at) for p, at in soon],
        ),
        lifetime_earned=balance.lifetime_earned,
        growth_value=balance.growth_value,
    )
