"""Tier evaluation (downgrades) and the birthday bonus: periodic jobs with an explicit ``now``.

Tier evaluation (docs/points-rules.md, "Tier evaluation"): a member's evaluation falls on
the ladder's evaluation date (the membership anniversary by default, or 1 January) and is
applied once the grace period after it has passed. The member then keeps the tier if the
growth value (rolling window, as of the run) still qualifies for it, otherwise drops
exactly one level (``tiers.evaluate``); upgrades never happen here (the order flow applies
them at once). ``members.last_evaluated_at`` records the evaluation date handled, so a
second run (or a second worker) does nothing, and a member whose job runs late is
evaluated once per missed date, one level each.

Birthday bonus: on the member's birthday in their time zone (29 February: 28 February in
other years), the ``birthday`` rule's points, once a year (natural key
``birthday:<member>:<year>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import extract, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from points import events
from points.actions.credit import earn_for_action, lock_action_member
from points.actions.service import birthday_key, is_birthday, local_day
from points.ledger import service as ledger
from points.ledger.models import entries
from points.members.models import Member
from points.settings import PointsSettings
from points.tiers import service as tiers
from points.tiers.schemas import TierLadderIn

log = structlog.get_logger("points.jobs.tiers")


@dataclass
class EvaluationResult:
    evaluated: int = 0
    downgraded: int = 0


def due_evaluation(
    ladder: TierLadderIn,
    enrolled_at: datetime,
    last_evaluated_at: datetime | None,
    now: datetime,
) -> datetime | None:
    """The evaluation date to apply now (its grace period is over), or None."""
    since = max(enrolled_at, last_evaluated_at) if last_evaluated_at else enrolled_at
    due = tiers.next_evaluation_at(ladder, enrolled_at, since)
    if due + timedelta(days=ladder.downgrade_grace_days) <= now:
        return due
    return None


async def evaluate_member(
    session: AsyncSession, ladder: TierLadderIn, member_id: str, now: datetime
) -> tuple[bool, bool]:
    """Evaluate one member if due; returns (evaluated, downgraded)."""
    locked = await ledger.lock_balance(session, member_id)
    if locked is None:
        return False, False
    member = (
        await session.execute(
            select(Member.tier, Member.enrolled_at, Member.last_evaluated_at).where(
                Member.member_id == member_id
            )
        )
    ).one()
    due = due_evaluation(ladder, member.enrolled_at, member.last_evaluated_at, now)
    if due is None:
        return False, False
    growth = await ledger.growth_value(session, member_id, tiers.growth_window_start(ladder, now))
    try:
        target = tiers.evaluate(ladder, member.tier, growth)
    except tiers.UnknownTier:  # a code the ladder lacks: settle on what the growth gives
        target = tiers.tier_for_growth(ladder, growth)
    values: dict[str, object] = {"last_evaluated_at": due}
    downgraded = target.code != member.tier
    if downgraded:
        values["tier"] = target.code
        await events.publish(
            session,
            events.tier_changed(
                member_id,
                member.tier,
                target.code,
                direction="down",
                reason="evaluation",
                growth_value=growth,
                at=now,
            ),
        )
    await session.execute(update(Member).where(Member.member_id == member_id).values(**values))
    return True, downgraded


async def evaluate_tiers(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: PointsSettings,
    now: datetime,
    *,
    member_ids: Sequence[str] | None = None,
) -> EvaluationResult:
    """Apply every due evaluation (members above the entry tier can lose a level)."""
    result = EvaluationResult()
    async with sessionmaker() as session:
        ladder = await tiers.load_ladder(session)
        query = select(Member.member_id, Member.enrolled_at, Member.last_evaluated_at).where(
            Member.tier != tiers.entry_tier(ladder).code, Member.erased_at.is_(None)
        )
        if member_ids is not None:
            query = query.where(Member.member_id.in_(member_ids))
        candidates = (await session.execute(query)).all()
    for row in candidates:
        if due_evaluation(ladder, row.enrolled_at, row.last_evaluated_at, now) is None:
            continue
        async with sessionmaker() as session, session.begin():
            evaluated, downgraded = await evaluate_member(session, ladder, row.member_id, now)
        result.evaluated += evaluated
        result.downgraded += downgraded
    if result.evaluated:
        log.info("tiers_evaluated", evaluated=result.evaluated, downgraded=result.downgraded)
    return result


async def birthday_bonuses(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: PointsSettings,
    now: datetime,
    *,
    member_ids: Sequence[str] | None = None,
) -> int:
    """Credit the birthday rule to members whose local day today is their birthday."""
    async with sessionmaker() as session:
        ladder = await tiers.load_ladder(session)
        # today (or yesterday / tomorrow in UTC) is someone's birthday somewhere: filter by
        # month and day around now, then check each member in their own zone
        days = {(now + timedelta(days=d)).date() for d in (-1, 0, 1)}
        month_days = {(d.month, d.day) for d in days} | (
            {(2, 29)} if any((d.month, d.day) == (2, 28) for d in days) else set()
        )
        query = select(Member.member_id, Member.birthday, Member.timezone).where(
            Member.birthday.is_not(None),
            Member.erased_at.is_(None),
            tuple_(extract("month", Member.birthday), extract("day", Member.birthday)).in_(
                sorted(month_days)
            ),
        )
        if member_ids is not None:
            query = query.where(Member.member_id.in_(member_ids))
        rows = (await session.execute(query)).all()
    credited = 0
    for row in rows:
        if not is_birthday(row.birthday, now, row.timezone):
            continue
        year = local_day(now, row.timezone).year
        key = birthday_key(row.member_id, year)
        async with sessionmaker() as session, session.begin():
            member = await lock_action_member(session, row.member_id)
            if member is None:
                continue
            done = (
                await session.execute(select(entries.c.id).where(entries.c.idempotency_key == key))
            ).first()
            if done is not None:
                continue
            earned = await earn_for_action(
                session,
                settings,
                ladder,
                member,
                action="birthday",
                key=key,
                source_id=str(year),
                at=now,
            )
            credited += earned.points > 0
    return credited
