"""Erasure and export of a member's data (DELETE /v1/members/{id}, GET .../export).

Erasure removes the personal data this service holds (name, email, phone, birthday, the
attributes sent with interactions, coupon codes and channels on orders) and marks the
member erased; the ledger (entries, lots, balances, orders' amounts) is kept, keyed by the
shop's member id only, so the books still balance. After it the member is gone for every
endpoint (404), and ``loyalty.member.erased.v1`` {member_id, erased_at} tells the other
services to erase theirs. Erasing twice answers the first erasure again.

An erased member is an unknown member to every write: ``lock_live_member`` (redemptions,
cancels, adjustments) and the action lock (check-ins, interactions) answer 404
``member-not-found`` where the member is in the path, and orders / interactions answer 422
``unknown-member`` (field ``body.member_id``) where it is in the body, exactly as for a
member that never enrolled. Refunds of orders recorded before the erasure still go through
(the shop has refunded the money; the kept ledger must follow).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from points import events
from points.actions.models import check_ins, interactions
from points.errors import MemberNotFound
from points.ledger import service as ledger
from points.ledger.models import Balance, entries, lots
from points.members.models import Member
from points.orders.models import orders
from points.redemptions.models import Redemption

_LOCK_LIVE = ledger.balance_lock_statement(live_only=True)


async def lock_live_member(session: AsyncSession, member_id: str) -> ledger.LockedBalance:
    """The member's balance row lock (one statement); 404 if unknown or erased.

    ``erase`` takes the same lock, so once this returns the member stays un-erased until the
    transaction ends.
    """
    conn = await session.connection()
    row = (await conn.execute(_LOCK_LIVE, {"p_member_id": member_id})).first()
    if row is None:
        raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
    return ledger.LockedBalance(
        row.member_id,
        row.available,
        row.pending,
        row.debt,
        row.lifetime_earned,
        row.growth_value,
        row.tier,
    )


async def erase(session: AsyncSession, member_id: str, *, now: datetime | None = None) -> datetime:
    """Erase the member's personal data; returns when it was (first) erased."""
    now = now or datetime.now(UTC)
    await ledger.lock_member(session, member_id)  # serialise with the member's ledger writes
    erased_at = (
        await session.execute(select(Member.erased_at).where(Member.member_id == member_id))
    ).scalar_one()
    if erased_at is not None:
        return erased_at
    await session.execute(
        update(Member)
        .where(Member.member_id == member_id)
        .values(name=None, email=None, phone=None, birthday=None, erased_at=now)
    )
    # a checkout that read the member as live before this must not record an order now
    await ledger.touch_balance(session, member_id)
    await session.execute(
        update(interactions).where(interactions.c.member_id == member_id).values(attributes={})
    )
    await session.execute(
        update(orders).where(orders.c.member_id == member_id).values(coupon_used=None, channel=None)
    )
    await events.publish(
        session,
        events.points_event(
            events.MEMBER_ERASED,
            member_id,
            {"member_id": member_id, "erased_at": now.isoformat()},
            time=now,
        ),
    )
    return now


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result.all()]


async def export(session: AsyncSession, member_id: str) -> dict[str, Any]:
    """Everything this service holds about the member (JSON-ready through pydantic)."""
    member = (
        await session.execute(
            select(Member).where(Member.member_id == member_id, Member.erased_at.is_(None))
        )
    ).scalar_one_or_none()
    if member is None:
        raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
    balance = (
        await session.execute(select(Balance).where(Balance.member_id == member_id))
    ).scalar_one()
    profile = {
        c: getattr(member, c)
        for c in (
            "member_id",
            "name",
            "email",
            "phone",
            "birthday",
            "timezone",
            "referral_code",
            "referred_by",
            "tier",
            "enrolled_at",
        )
    }
    return {
        "member": profile,
        "balance": {
            "available": balance.available,
            "pending": balance.pending,
            "debt": balance.debt,
            "lifetime_earned": balance.lifetime_earned,
        },
        "ledger": _rows(
            await session.execute(
                select(
                    entries.c.id,
                    entries.c.entry_type,
                    entries.c.points,
                    entries.c.pending_delta,
                    entries.c.debt_delta,
                    entries.c.lot_id,
                    entries.c.reason,
                    entries.c.source_type,
                    entries.c.source_id,
                    entries.c.occurred_at,
                    entries.c.created_at,
                )
                .where(entries.c.member_id == member_id)
                .order_by(entries.c.id)
            )
        ),
        "lots": _rows(
            await session.execute(
                select(
                    lots.c.id,
                    lots.c.points,
                    lots.c.remaining,
                    lots.c.status,
                    lots.c.earned_at,
                    lots.c.expires_at,
                )
                .where(lots.c.member_id == member_id)
                .order_by(lots.c.id)
            )
        ),
        "orders": _rows(
            await session.execute(
                select(
                    orders.c.order_id,
                    orders.c.amount,
                    orders.c.currency,
                    orders.c["items"],
                    orders.c.coupon_used,
                    orders.c.channel,
                    orders.c.occurred_at,
                    orders.c.points_earned,
                )
                .where(orders.c.member_id == member_id)
                .order_by(orders.c.occurred_at)
            )
        ),
        "redemptions": _rows(
            await session.execute(
                select(
                    Redemption.redemption_id,
                    Redemption.reward_id,
                    Redemption.quantity,
                    Redemption.order_id,
                    Redemption.points,
                    Redemption.status,
                    Redemption.created_at,
                ).where(Redemption.member_id == member_id)
            )
        ),
        "check_ins": _rows(
            await session.execute(
                select(check_ins.c.local_day, check_ins.c.points, check_ins.c.occurred_at).where(
                    check_ins.c.member_id == member_id
                )
            )
        ),
        "interactions": _rows(
            await session.execute(
                select(
                    interactions.c.event_id,
                    interactions.c.type,
                    interactions.c.occurred_at,
                    interactions.c.attributes,
                    interactions.c.points,
                ).where(interactions.c.member_id == member_id)
            )
        ),
    }
