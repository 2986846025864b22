"""Referrals: a member enrolled with another's referral code; both are credited (rules
``referral_referrer`` / ``referral_new_member``) when the new member's first order completes.

Locks: the new member's balance row (taken by the order flow) then the referrer's; a
referrer always enrolled before the member it referred, so the lock order is acyclic.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from points.actions.credit import earn_for_action, lock_action_member
from points.actions.service import referral_key
from points.members.models import Member
from points.orders.models import orders
from points.orders.schemas import OrderIn, OrderOut
from points.settings import PointsSettings
from points.tiers.schemas import TierLadderIn


async def referrer_for_code(session: AsyncSession, code: str) -> str | None:
    return (
        await session.execute(
            select(Member.member_id).where(
                Member.referral_code == code.strip().upper(), Member.erased_at.is_(None)
            )
        )
    ).scalar_one_or_none()


async def credit_referral(
    session: AsyncSession,
    settings: PointsSettings,
    ladder: TierLadderIn,
    order: OrderIn,
    referrer_id: str,
    now: datetime,
    answer: OrderOut,
) -> OrderOut:
    """Credit both sides of the referral once (natural keys ``referral:<new>:<side>``).

    Each bonus that counts toward growth value may upgrade its member at once; returns the
    order's ``answer``, saying so when the new member's bonus moved it up (the stored answer
    too, which a retry of the order replays).
    """
    new_member = await lock_action_member(session, order.member_id)
    referrer = await lock_action_member(session, referrer_id)
    if new_member is None or referrer is None:
        return answer
    details = {"order_id": order.order_id, "new_member_id": order.member_id}
    for member, action, side in (
        (new_member, "referral_new_member", "new_member"),
        (referrer, "referral_referrer", "referrer"),
    ):
        earned = await earn_for_action(
            session,
            settings,
            ladder,
            member,
            action=action,
            key=referral_key(order.member_id, side),  # type: ignore[arg-type]
            source_id=order.order_id,
            at=order.occurred_at,
            details=details,
        )
        if member is new_member and earned.upgraded_to is not None:
            answer = answer.model_copy(update={"tier": earned.upgraded_to, "tier_changed": True})
            await session.execute(
                update(orders)
                .where(orders.c.order_id == order.order_id)
                .values(response=answer.model_dump(mode="json"))
            )
    return answer
