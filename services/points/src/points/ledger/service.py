"""Ledger writes. Every change is an entry; the cached balance moves in the same transaction."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from points.ledger.models import Balance, LedgerEntry, Lot


@dataclass(frozen=True)
class LockedBalance:
    member_id: str
    available: int
    pending: int
    lifetime_earned: int
    tier: str


async def lock_balance(session: AsyncSession, member_id: str) -> LockedBalance | None:
    """Take the member's balance row lock (every ledger write goes through here first)."""
    from points.members.models import Member

    row = (
        await session.execute(
            select(
                Balance.member_id,
                Balance.available,
                Balance.pending,
                Balance.lifetime_earned,
                Member.tier,
            )
            .join(Member, Member.member_id == Balance.member_id)
            .where(Balance.member_id == member_id)
            .with_for_update(of=Balance)
        )
    ).first()
    if row is None:
        return None
    return LockedBalance(row.member_id, row.available, row.pending, row.lifetime_earned, row.tier)


async def credit(
    session: AsyncSession,
    *,
    member_id: str,
    points: int,
    entry_type: str,
    source_type: str,
    source_id: str,
    idempotency_key: str,
    occurred_at: datetime,
    reason: str | None = None,
) -> int:
    """Credit available points as a new lot; returns the lot id. The caller holds the lock."""
    lot_id = (
        await session.execute(
            Lot.__table__.insert()
            .values(
                member_id=member_id,
                points=points,
                remaining=points,
                status="available",
                source_type=source_type,
                source_id=source_id,
                earned_at=occurred_at,
                available_at=occurred_at,
                expires_at=None,
            )
            .returning(Lot.__table__.c.id)
        )
    ).scalar_one()
    await session.execute(
        LedgerEntry.__table__.insert().values(
            member_id=member_id,
            entry_type=entry_type,
            points=points,
            lot_id=lot_id,
            reason=reason,
            source_type=source_type,
            source_id=source_id,
            idempotency_key=idempotency_key,
            occurred_at=occurred_at,
        )
    )
    await session.execute(
        update(Balance)
        .where(Balance.member_id == member_id)
        .values(
            available=Balance.available + points,
            lifetime_earned=Balance.lifetime_earned + points,
            growth_value=Balance.growth_value + points,
        )
    )
    return int(lot_id)
