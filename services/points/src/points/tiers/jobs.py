"""Tier evaluation (downgrades): a periodic job with an explicit ``now``.

Tier evaluation (docs/points-rules.md, "Tier evaluation"): a member's evaluation falls on
the ladder's evaluation date (the membership anniversary by default, or 1 January) and is
applied once the grace period after it has passed. The member then keeps the tier if the
growth value (rolling window, as of the run) still qualifies for it, otherwise drops
exactly one level (``tiers.evaluate``); upgrades never happen here (every credit that adds
growth value applies them at once: ``points.tiers.upgrades``). ``members.last_evaluated_at``
records the evaluation date handled, so a second run (or a second worker) does nothing,
and a member whose job runs late is evaluated once per missed date, one level each (one
date per run).

``members.next_evaluation_at`` (indexed) holds each member's next evaluation date, so a run
reads only the members that are due. The date depends only on the enrolment, the last
evaluation and the ladder's policy, not on the tier, so tier changes (orders, ladder
changes) need not touch it; it is set when an evaluation is applied (members at the entry
tier too: their evaluation only moves the date), computed by the job for members that have
none yet (new members, or all members after the ladder's evaluation policy changed), and
a stale early date is simply moved on when read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from points import events
from points.ledger import service as ledger
from points.members.models import Member
from points.settings import PointsSettings
from points.tiers import service as tiers
from points.tiers.schemas import TierLadderIn

log = structlog.get_logger("points.tiers.jobs")


@dataclass
class EvaluationResult:
    evaluated: int = 0
    downgraded: int = 0
    scheduled: int = 0  # members whose (missing) evaluation date this run computed


def scheduled_evaluation(
    ladder: TierLadderIn, enrolled_at: datetime, last_evaluated_at: datetime | None
) -> datetime:
    """The member's next evaluation date: the first one after enrolment or the last handled."""
    since = max(enrolled_at, last_evaluated_at) if last_evaluated_at else enrolled_at
    return tiers.next_evaluation_at(ladder, enrolled_at, since)


def due_evaluation(
    ladder: TierLadderIn,
    enrolled_at: datetime,
    last_evaluated_at: datetime | None,
    now: datetime,
) -> datetime | None:
    """The evaluation date to apply now (its grace period is over), or None."""
    due = scheduled_evaluation(ladder, enrolled_at, last_evaluated_at)
    if due + timedelta(days=ladder.downgrade_grace_days) <= now:
        return due
    return None


async def evaluate_member(
    session: AsyncSession, ladder: TierLadderIn, member_id: str, now: datetime
) -> tuple[bool, bool]:
    """Evaluate one member if due; returns (evaluated, downgraded).

    Always leaves ``next_evaluation_at`` on the member's next date, so a member the job
    has looked at is not read again before that date.
    """
    locked = await ledger.lock_balance(session, member_id)
    if locked is None:
        return False, False
    member = (
        await session.execute(
            select(
                Member.tier, Member.enrolled_at, Member.last_evaluated_at, Member.erased_at
            ).where(Member.member_id == member_id)
        )
    ).one()
    if member.erased_at is not None:
        return False, False
    due = due_evaluation(ladder, member.enrolled_at, member.last_evaluated_at, now)
    if due is None:  # read on a stale date (e.g. the policy changed): just reschedule
        await session.execute(
            update(Member)
            .where(Member.member_id == member_id)
            .values(
                next_evaluation_at=scheduled_evaluation(
                    ladder, member.enrolled_at, member.last_evaluated_at
                )
            )
        )
        return False, False
    values: dict[str, object] = {
        "last_evaluated_at": due,
        "next_evaluation_at": tiers.next_evaluation_at(ladder, member.enrolled_at, due),
    }
    entry = tiers.entry_tier(ladder).code
    downgraded = False
    if member.tier != entry:  # the entry tier cannot go down: the date is all there is to do
        growth = await ledger.growth_value(
            session, member_id, tiers.growth_window_start(ladder, now)
        )
        try:
            target = tiers.evaluate(ladder, member.tier, growth)
        except tiers.UnknownTier:  # a code the ladder lacks: settle on what the growth gives
            target = tiers.tier_for_growth(ladder, growth)
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
    if downgraded:  # an order reads the tier: a new balance row version tells it (touch_balance)
        await ledger.touch_balance(session, member_id)
    return True, downgraded


def _only(query: Any, member_ids: Sequence[str] | None) -> Any:
    return query if member_ids is None else query.where(Member.member_id.in_(member_ids))


async def schedule_unscheduled(
    sessionmaker: async_sessionmaker[AsyncSession],
    ladder: TierLadderIn,
    *,
    batch: int = 1000,
    member_ids: Sequence[str] | None = None,
) -> int:
    """Compute ``next_evaluation_at`` where it is missing (new members, policy change).

    No balance lock: the date depends only on ``enrolled_at`` and ``last_evaluated_at``, and
    the UPDATE applies only while the date is still missing (an evaluation that set it first
    wins). Returns how many members were scheduled.
    """
    done = 0
    while True:
        async with sessionmaker() as session, session.begin():
            rows = (
                await session.execute(
                    _only(
                        select(Member.member_id, Member.enrolled_at, Member.last_evaluated_at)
                        .where(Member.erased_at.is_(None), Member.next_evaluation_at.is_(None))
                        .order_by(Member.member_id)  # row locks in member id order, as
                        .limit(batch),  # PUT /v1/tiers takes them: no deadlock
                        member_ids,
                    )
                )
            ).all()
            if rows:
                await session.execute(
                    text(
                        "UPDATE members SET next_evaluation_at = :at"
                        " WHERE member_id = :m AND next_evaluation_at IS NULL"
                    ),
                    [
                        {
                            "m": r.member_id,
                            "at": scheduled_evaluation(ladder, r.enrolled_at, r.last_evaluated_at),
                        }
                        for r in rows
                    ],
                )
        done += len(rows)
        if len(rows) < batch:
            return done


async def evaluate_tiers(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: PointsSettings,
    now: datetime,
    *,
    member_ids: Sequence[str] | None = None,
    batch: int = 500,
) -> EvaluationResult:
    """Apply every due evaluation: members above the entry tier can lose a level.

    Reads only members whose ``next_evaluation_at + downgrade_grace_days <= now`` (index
    ``ix_members_evaluation_due``), plus, once, members not scheduled yet
    (``ix_members_unscheduled``): a run costs in
    proportion to the members that are due, not to all members. Each member is handled at
    most once per run (one missed date, one level, per run).
    """
    result = EvaluationResult()
    async with sessionmaker() as session:
        ladder = await tiers.load_ladder(session)
    result.scheduled = await schedule_unscheduled(sessionmaker, ladder, member_ids=member_ids)
    cutoff = now - timedelta(days=ladder.downgrade_grace_days)
    seen: set[str] = set()
    after: tuple[datetime, str] | None = None
    while True:
        query = (
            select(Member.member_id, Member.next_evaluation_at)
            .where(Member.erased_at.is_(None), Member.next_evaluation_at <= cutoff)
            .order_by(Member.next_evaluation_at, Member.member_id)
            .limit(batch)
        )
        if after is not None:
            query = query.where(
                tuple_(Member.next_evaluation_at, Member.member_id) > tuple_(*after)
            )
        async with sessionmaker() as session:
            page = (await session.execute(_only(query, member_ids))).all()
        for row in page:
            if row.member_id in seen:  # evaluated earlier in this run: its next date waits
                continue
            seen.add(row.member_id)
            async with sessionmaker() as session, session.begin():
                evaluated, downgraded = await evaluate_member(session, ladder, row.member_id, now)
            result.evaluated += evaluated
            result.downgraded += downgraded
        if len(page) < batch:
            break
        after = (page[-1].next_evaluation_at, page[-1].member_id)
    if result.evaluated or result.scheduled:
        log.info(
            "tiers_evaluated",
            evaluated=result.evaluated,
            downgraded=result.downgraded,
            scheduled=result.scheduled,
        )
    return result
