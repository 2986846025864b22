"""Upgrades at once: whatever adds growth value moves the member up when it qualifies.

DOMAIN (Tiers): the upgrade happens as soon as the growth value crosses a threshold;
downgrades wait for the evaluation (``points.tiers.jobs``). One rule for every credit
that adds growth value (docs/points-rules.md, "Upgrades at once"):

- ``upgrade_for`` (pure): the tier the growth value qualifies for, if it is above the tier
  held, as an ``Upgrade`` whose ``event()`` is the ``tier.changed`` it publishes. The
  checkout plans with it and writes the new tier and that event in its one statement
  (``points.checkout.plan``).
- ``upgrade_at_once``: every other credit (actions: check-ins, interactions, surveys,
  birthdays, both sides of a referral; adjustments the ladder counts), once its
  ``Posting`` is written, in the same transaction and under the same balance-row lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import DateTime, String, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import CloudEvent
from points import events
from points.ledger import service as ledger
from points.ledger.models import balances
from points.members.models import Member
from points.tiers import service as tiers
from points.tiers.schemas import Tier, TierLadderIn

members = cast(Table, Member.__table__)


@dataclass(frozen=True)
class Upgrade:
    """A move up the ladder: from the tier stored on the member to the one growth gives."""

    member_id: str
    from_tier: str
    to_tier: str
    growth_value: int
    reason: str  # what added the growth value: "order", "action", "adjustment"
    at: datetime

    def event(self) -> CloudEvent:
        """``loyalty.tier.changed.v1``, the one shape every tier change publishes."""
        return events.tier_changed(
            self.member_id,
            self.from_tier,
            self.to_tier,
            direction="up",
            reason=self.reason,
            growth_value=self.growth_value,
            at=self.at,
        )


def held_tier(ladder: TierLadderIn, code: str, growth_value: int) -> Tier:
    """The member's tier in this ladder (a code the ladder lacks: what the growth value gives)."""
    try:
        return tiers.tier_by_code(ladder, code)
    except tiers.UnknownTier:
        return tiers.tier_for_growth(ladder, growth_value)


def upgrade_for(
    ladder: TierLadderIn,
    member_id: str,
    stored_tier: str,
    held: Tier,
    *,
    growth_value: int,
    reason: str,
    at: datetime,
) -> Upgrade | None:
    """The upgrade a credit gives that brought the growth value (over the window ending at
    the credit's ``at``) to ``growth_value``, or None: never down, possibly several levels.

    ``stored_tier`` is the code on the member row, ``held`` its tier in this ladder
    (``held_tier``: a code the ladder lacks counts as the tier the growth before gave).
    """
    target = tiers.upgrade_for_growth(ladder, held.code, growth_value)
    if target is None:
        return None
    return Upgrade(member_id, stored_tier, target.code, growth_value, reason, at)


# The tier held and the growth value, read after the credit was written: a statement of its
# own, so it sees the tier an upgrade committed while this writer waited for the balance
# lock (the lock statement re-reads the balance row only, not the member row it joins).
_HELD_AND_GROWTH = (
    select(
        members.c.tier,
        ledger.window_growth(bindparam("p_window_start", type_=DateTime(True))).label("growth"),
    )
    .join_from(balances, members, members.c.member_id == balances.c.member_id)
    .where(balances.c.member_id == bindparam("p_member_id", type_=String))
)


async def upgrade_at_once(
    session: AsyncSession,
    ladder: TierLadderIn,
    member_id: str,
    *,
    growth_added: int,
    at: datetime,
    reason: str,
) -> Upgrade | None:
    """After a credit that added ``growth_added`` to the member's growth value: the upgrade
    it qualifies for, written (the member's tier, ``tier.changed``) in the caller's
    transaction; None if it gives none.

    The caller holds the member's balance-row lock and has written the credit
    (``Posting.finish``, which also gives the balance row the new version that tells a
    checkout holding older facts to read them again). A credit adding nothing reads nothing.
    """
    if growth_added <= 0:
        return None
    params = {"p_member_id": member_id, "p_window_start": tiers.growth_window_start(ladder, at)}
    row = (await session.execute(_HELD_AND_GROWTH, params)).one()
    growth = max(0, int(row.growth))
    held = held_tier(ladder, row.tier, growth - growth_added)
    upgrade = upgrade_for(
        ladder, member_id, row.tier, held, growth_value=growth, reason=reason, at=at
    )
    if upgrade is not None:
        await session.execute(
            update(members).where(members.c.member_id == member_id).values(tier=upgrade.to_tier)
        )
        await events.publish(session, upgrade.event())
    return upgrade
