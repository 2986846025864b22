"""Tier rules: pure functions over a ladder, plus loading and replacing the stored ladder.

The pure functions take a ``TierLadderIn`` (or the stored ``TierLadder``) and never touch
the database; the order flow, the evaluation job and the member status call them.
Their contract is written down in docs/points-rules.md.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.deadlocks import retry_on_deadlock
from loyalty_shared.problems import Conflict
from points import events
from points.ledger import service as ledger
from points.tiers.models import TierLadderRow
from points.tiers.schemas import GrowthPointType, Tier, TierLadder, TierLadderIn, TierLadderUpdated


class UnknownTier(LookupError):
    """A tier code that the ladder does not contain (a programming error, not client input)."""


class TierInUse(Conflict):
    slug = "tier-in-use"
    title = "Tier still held by members"


@dataclass(frozen=True)
class Progress:
    next_tier: Tier | None
    growth_value_missing: int


# ---------------------------------------------------------------------------- pure rules


def entry_tier(ladder: TierLadderIn) -> Tier:
    """The tier a new member starts in: the first (threshold 0) tier."""
    return ladder.tiers[0]


def tier_by_code(ladder: TierLadderIn, code: str) -> Tier:
    for tier in ladder.tiers:
        if tier.code == code:
            return tier
    raise UnknownTier(code)


def rank(ladder: TierLadderIn, code: str) -> int:
    """0 for the lowest tier, 1 for the next..."""
    for index, tier in enumerate(ladder.tiers):
        if tier.code == code:
            return index
    raise UnknownTier(code)


def tier_for_growth(ladder: TierLadderIn, growth_value: int) -> Tier:
    """The highest tier whose threshold is <= growth_value (the first tier for anything <= 0)."""
    qualified = ladder.tiers[0]
    for tier in ladder.tiers[1:]:
        if tier.threshold <= growth_value:
            qualified = tier
        else:
            break
    return qualified


def upgrade_for_growth(
    ladder: TierLadderIn, current_tier_code: str, growth_value: int
) -> Tier | None:
    """The tier to move to at once if growth_value qualifies above the current tier, else None.

    Upgrades may skip levels (a big order can go Regular -> Gold); downgrades never happen here.
    """
    qualified = tier_for_growth(ladder, growth_value)
    if rank(ladder, qualified.code) > rank(ladder, current_tier_code):
        return qualified
    return None


def progress(ladder: TierLadderIn, current_tier_code: str, growth_value: int) -> Progress:
    """The tier above the current one and exactly how much growth value is missing (>= 0)."""
    index = rank(ladder, current_tier_code)
    if index + 1 >= len(ladder.tiers):
        return Progress(next_tier=None, growth_value_missing=0)
    nxt = ladder.tiers[index + 1]
    return Progress(next_tier=nxt, growth_value_missing=max(0, nxt.threshold - growth_value))


def downgrade_target(ladder: TierLadderIn, current: str, qualified: str) -> Tier:
    """The tier a member holds after an evaluation: never more than one level down, never up.

    ``current`` is the tier held, ``qualified`` the tier the member's growth value qualifies
    for (``tier_for_growth``). If qualified is the current tier or higher the member keeps the
    current tier (upgrades are applied at once by the credit that qualifies, not at evaluation:
    ``points.tiers.upgrades``).
    """
    current_rank = rank(ladder, current)
    if rank(ladder, qualified) >= current_rank:
        return ladder.tiers[current_rank]
    return ladder.tiers[current_rank - 1]


def evaluate(ladder: TierLadderIn, current: str, growth_value: int) -> Tier:
    """What the evaluation job applies: ``downgrade_target`` for the member's growth value."""
    return downgrade_target(ladder, current, tier_for_growth(ladder, growth_value).code)


def multiplier(ladder: TierLadderIn, tier_code: str) -> Decimal:
    return tier_by_code(ladder, tier_code).multiplier


def counts_toward_growth(
    ladder: TierLadderIn, point_type: GrowthPointType, *, rule_counts: bool = True
) -> bool:
    """Whether credited points of this type add to growth value.

    ``rule_counts`` is the earning rule's own ``counts_toward_growth`` flag (for ``action``
    points both the ladder and the rule must agree; other types ignore it).
    """
    if point_type not in ladder.growth_point_types:
        return False
    return rule_counts if point_type == "action" else True


def growth_window_start(ladder: TierLadderIn, at: datetime) -> datetime:
    """Credits at or after this instant count toward growth value at ``at`` (rolling window)."""
    return at - timedelta(days=ladder.rolling_window_days)


def _anniversary(enrolled_at: datetime, year: int) -> datetime:
    day = min(enrolled_at.day, calendar.monthrange(year, enrolled_at.month)[1])
    return enrolled_at.replace(year=year, day=day)


def next_evaluation_at(ladder: TierLadderIn, enrolled_at: datetime, now: datetime) -> datetime:
    """The next evaluation strictly after ``now``.

    ``anniversary``: the membership anniversary (29 Feb enrolments use 28 Feb in other
    years); ``calendar_year``: 1 January 00:00 UTC.
    """
    if ladder.evaluation_policy == "calendar_year":
        return datetime(now.astimezone(UTC).year + 1, 1, 1, tzinfo=UTC)
    year = max(now.year, enrolled_at.year + 1)
    candidate = _anniversary(enrolled_at, year)
    while candidate <= now:
        year += 1
        candidate = _anniversary(enrolled_at, year)
    return candidate


def tier_held_until(ladder: TierLadderIn, enrolled_at: datetime, now: datetime) -> datetime:
    """The earliest moment the current tier can be lost: an evaluation date + grace period.

    That is the first evaluation whose grace period has not ended at ``now``: an anniversary
    10 days ago with 30 days' grace is applied in 20 days (the evaluation job's
    ``due + grace <= now``), not a year later.
    """
    grace = timedelta(days=ladder.downgrade_grace_days)
    return next_evaluation_at(ladder, enrolled_at, now - grace) + grace


def benefit_list(tier: Tier) -> list[str]:
    """The tier's benefits as short labels for the member status (``benefits[]``)."""
    b = tier.benefits
    labels: list[str] = []
    if b.discount_percent > 0:
        labels.append(f"discount_{b.discount_percent.normalize():f}_percent")
    if tier.multiplier != 1:
        labels.append(f"points_multiplier_{tier.multiplier.normalize():f}x")
    for flag in (
        "free_shipping",
        "birthday_gift",
        "early_access",
        "priority_service",
        "dedicated_advisor",
        "home_service",
    ):
        if getattr(b, flag):
            labels.append(flag)
    return labels


@dataclass(frozen=True)
class TierStatus:
    """What a member sees about their tier (GET /v1/members/{id})."""

    tier: Tier
    next_tier: Tier | None
    growth_value: int
    growth_value_missing: int
    tier_held_until: datetime
    benefits: list[str]


def tier_status(
    ladder: TierLadderIn,
    tier_code: str,
    growth_value: int,
    enrolled_at: datetime,
    now: datetime,
) -> TierStatus:
    """Current tier, next tier, exactly how much growth value is missing, held-until, benefits.

    A code the ladder lacks is shown as the tier the growth value qualifies for.
    """
    try:
        tier = tier_by_code(ladder, tier_code)
    except UnknownTier:
        tier = tier_for_growth(ladder, growth_value)
    step = progress(ladder, tier.code, growth_value)
    return TierStatus(
        tier=tier,
        next_tier=step.next_tier,
        growth_value=growth_value,
        growth_value_missing=step.growth_value_missing,
        tier_held_until=tier_held_until(ladder, enrolled_at, now),
        benefits=benefit_list(tier),
    )


# ---------------------------------------------------------------------------- storage


def _stored(row: TierLadderRow) -> TierLadder:
    return TierLadder.model_validate(
        {**row.ladder, "version": row.version, "updated_at": row.updated_at}
    )


async def load_ladder(session: AsyncSession) -> TierLadder:
    """The current ladder (one primary-key read). Seeded by the migration, so always present."""
    row = (
        await session.execute(
            select(TierLadderRow.ladder, TierLadderRow.version, TierLadderRow.updated_at).where(
                TierLadderRow.id == 1
            )
        )
    ).one()
    return TierLadder.model_validate(
        {**row.ladder, "version": row.version, "updated_at": row.updated_at}
    )


_UPGRADE_CANDIDATES = text(
    """
    SELECT m.member_id, m.tier, g.growth_value
    FROM members m JOIN balances b ON b.member_id = m.member_id
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(e.growth_delta), 0) AS growth_value FROM ledger_entries e
        WHERE e.member_id = m.member_id AND e.occurred_at >= :window_start
    ) g
    WHERE b.growth_value >= :lowest_paid_threshold AND g.growth_value >= :lowest_paid_threshold
    ORDER BY m.member_id
    FOR UPDATE OF b
    """
)

_TIERS_HELD = text("SELECT DISTINCT tier FROM members WHERE tier = ANY(:codes)")


async def replace_ladder(
    session: AsyncSession, new: TierLadderIn, *, at: datetime | None = None
) -> TierLadderUpdated:
    """Store a new ladder and re-evaluate members predictably.

    - A tier code still held by a member cannot be removed (409 ``tier-in-use``).
    - Members whose growth value qualifies them above their tier under the new thresholds are
      upgraded at once (``tier.changed`` event, reason ``ladder_changed``).
    - Nobody is downgraded by a ladder change: a member above what the new thresholds give
      keeps the tier until the next evaluation (anniversary), then drops one level at a time.

    Rows are locked in member id order (balances, then members); a writer of several members
    that locks them in another order (a consumer batch in the order of its events) may still
    meet it halfway: then the whole replacement runs again (``retry_on_deadlock``), never a 500.
    """
    at = at or datetime.now(UTC)
    return await retry_on_deadlock(session, lambda: _replace_ladder(session, new, at))


async def _replace_ladder(
    session: AsyncSession, new: TierLadderIn, at: datetime
) -> TierLadderUpdated:
    current = (
        await session.execute(select(TierLadderRow).where(TierLadderRow.id == 1).with_for_update())
    ).scalar_one()
    old = _stored(current)
    removed = sorted({t.code for t in old.tiers} - {t.code for t in new.tiers})
    if removed:
        held = sorted((await session.execute(_TIERS_HELD, {"codes": removed})).scalars().all())
        if held:
            raise TierInUse(
                f"Tier(s) {', '.join(held)} are still held by members: keep the code(s) "
                "(rename the display name instead) or move the members first",
                codes=held,
            )
    document = new.model_dump(mode="json")
    row = (
        await session.execute(
            update(TierLadderRow)
            .where(TierLadderRow.id == 1)
            .values(
                ladder=bindparam("doc", type_=JSONB),
                version=TierLadderRow.version + 1,
                updated_at=at,
            )
            .returning(TierLadderRow.version, TierLadderRow.updated_at),
            {"doc": document},
        )
    ).one()
    upgraded = await _upgrade_qualified_members(session, new, at)
    if new.evaluation_policy != old.evaluation_policy:
        # every member's next evaluation date moves (anniversary <-> 1 January): the
        # evaluation job computes them again (members.next_evaluation_at, tiers/jobs.py)
        await session.execute(_FORGET_NEXT_EVALUATIONS)
    return TierLadderUpdated.model_validate(
        {
            **document,
            "version": row.version,
            "updated_at": row.updated_at,
            "members_upgraded": upgraded,
        }
    )


# the rows locked in member id order before they are written (the order every writer of
# several members' rows takes), not in the order a scan of the table reaches them
_FORGET_NEXT_EVALUATIONS = text(
    "UPDATE members SET next_evaluation_at = NULL FROM ("
    " SELECT member_id FROM members"
    " WHERE erased_at IS NULL AND next_evaluation_at IS NOT NULL"
    " ORDER BY member_id FOR UPDATE) AS locked"
    " WHERE members.member_id = locked.member_id"
)


async def _upgrade_qualified_members(
    session: AsyncSession, ladder: TierLadderIn, at: datetime
) -> int:
    if len(ladder.tiers) < 2:
        return 0
    candidates = (
        await session.execute(
            _UPGRADE_CANDIDATES,
            {
                "lowest_paid_threshold": ladder.tiers[1].threshold,
                "window_start": growth_window_start(ladder, at),
            },
        )
    ).all()
    changes: list[dict[str, str]] = []
    published = []
    for member_id, held, growth_value in candidates:
        try:
            target = upgrade_for_growth(ladder, held, growth_value)
        except UnknownTier:
            # held code absent from the ladder (enrolled with a default the ladder lacks):
            # treat as the entry tier
            target = tier_for_growth(ladder, growth_value)
            if target.code == held:
                continue
        if target is None:
            continue
        changes.append({"m": member_id, "t": target.code})
        published.append(
            events.tier_changed(
                member_id,
                held,
                target.code,
                direction="up",
                reason="ladder_changed",
                growth_value=growth_value,
                at=at,
            )
        )
    if changes:
        # balance rows first (the one lock order), and a new version tells a checkout that
        # read the old tier to read it again
        await ledger.touch_balance(session, *(change["m"] for change in changes))
        await session.execute(text("UPDATE members SET tier = :t WHERE member_id = :m"), changes)
        await events.publish(session, *published)
    return len(changes)
