"""The strategy matrix: rules (value group x behaviour group x lifecycle -> strategies) as data.

A rule's NULL dimension matches any value. A profile's strategies are the union
of the strategies of every rule that matches it, so the 12 families of the
brief (4 value, 4 behaviour, 4 lifecycle) are each a row, and ops may add rows
for specific combinations.
"""

from __future__ import annotations

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.deadlocks import retry_on_deadlock
from segmentation.conditions.fields import BEHAVIOUR_GROUPS, LIFECYCLES, VALUE_GROUPS
from segmentation.profiles.service import lock_profiles_for_bulk_write
from segmentation.segments.batch import refresh_all
from segmentation.strategies.models import StrategyRule

# Each combination's strategies: the union of those of every rule that matches it.
_MATRIX = """
SELECT c.value_group, c.behaviour_group, c.lifecycle,
       COALESCE(array_agg(DISTINCT x ORDER BY x) FILTER (WHERE x IS NOT NULL), '{{}}')
           AS strategies
FROM ({combos}) c
LEFT JOIN strategy_rules r
  ON (r.value_group IS NULL OR r.value_group = c.value_group)
 AND (r.behaviour_group IS NULL OR r.behaviour_group = c.behaviour_group)
 AND (r.lifecycle IS NULL OR r.lifecycle = c.lifecycle)
LEFT JOIN LATERAL unnest(r.strategies) AS x ON true
GROUP BY c.value_group, c.behaviour_group, c.lifecycle
"""

_PROFILES_COMBINATIONS = """
    SELECT DISTINCT value_group, behaviour_group, lifecycle FROM profiles
    WHERE value_group IS NOT NULL"""

_APPLY = f"""
WITH matrix AS ({_MATRIX.format(combos=_PROFILES_COMBINATIONS)})
UPDATE profiles p SET strategies = m.strategies
FROM matrix m
WHERE p.value_group = m.value_group
  AND p.behaviour_group IS NOT DISTINCT FROM m.behaviour_group
  AND p.lifecycle IS NOT DISTINCT FROM m.lifecycle
  AND p.strategies IS DISTINCT FROM m.strategies
"""

# Every combination a recompute can give (a group, a behaviour or none, a stage or none),
# for the recompute to write the strategies with the scores (apply_strategies then finds
# nothing left to change).
_EVERY_COMBINATION = _MATRIX.format(
    combos="""
    SELECT v AS value_group, b AS behaviour_group, l AS lifecycle
    FROM unnest(CAST(:value_groups AS text[])) v,
         unnest(CAST(:behaviour_groups AS text[]) || CAST(NULL AS text)) b,
         unnest(CAST(:lifecycles AS text[]) || CAST(NULL AS text)) l"""
)


_CLEAR = """
UPDATE profiles SET strategies = '{}' WHERE value_group IS NULL AND strategies <> '{}'
"""


async def list_rules(session: AsyncSession) -> list[StrategyRule]:
    return list((await session.execute(select(StrategyRule).order_by(StrategyRule.id))).scalars())


async def replace_rules(
    session: AsyncSession, rules: list[dict[str, object]]
) -> list[StrategyRule]:
    """Replace the matrix and update every profile at once, then the tags and segments (a
    condition on strategies is batch); retried if it loses a deadlock all the same (never
    a 500)."""

    async def write() -> list[StrategyRule]:
        await lock_profiles_for_bulk_write(session)
        await session.execute(delete(StrategyRule))
        for rule in rules:
            session.add(StrategyRule(**rule))
        await session.flush()
        await apply_strategies(session)
        # tags and segments on strategies are batch: brought up to date with the new matrix
        await refresh_all(session, "strategy-matrix.changed")
        return await list_rules(session)

    return await retry_on_deadlock(session, write)


async def strategy_matrix(session: AsyncSession, table: str) -> None:
    """The matrix for every combination of groups and stage, as the temporary ``table``
    (value_group, behaviour_group, lifecycle, strategies), dropped at commit."""
    await session.execute(
        text(f"CREATE TEMP TABLE {table} ON COMMIT DROP AS {_EVERY_COMBINATION}"),
        {
            "value_groups": list(VALUE_GROUPS),
            "behaviour_groups": list(BEHAVIOUR_GROUPS),
            "lifecycles": list(LIFECYCLES),
        },
    )


async def apply_strategies(session: AsyncSession) -> None:
    """Write every scored profile's strategies (profiles outside the population get none).

    A write over many profiles while consumers write some of them: the table lock first
    (``lock_profiles_for_bulk_write``), so that no row lock is ever taken in another order.
    """
    await lock_profiles_for_bulk_write(session)
    await session.execute(text(_APPLY))
    await session.execute(text(_CLEAR))
