"""A member is looked up by its primary key, whatever the evaluation job's indexes hold.

Every checkout, status read and ledger query looks a member up by
``member_id = :id AND erased_at IS NULL``. With a partial index over all members not erased
that has ``member_id`` as its second column, Postgres 18's skip scan made that index look as
cheap as the primary key when the members share one evaluation date (all unscheduled, or
all enrolled by one import), and the planner took it: a look-up read 7 pages instead of 3.
Migration 0007 split the index so that neither part can answer such a look-up.

(The old index, made empty by its migration before the members arrived, fails the "fresh"
cases: the planner took it for the look-up until statistics were gathered.)
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from loyalty_shared.testing import Infra, migrated_database
from points.testing import SERVICE_DIR

LOOKUPS = {
    "member": "SELECT tier FROM members WHERE member_id = $1 AND erased_at IS NULL",
    "member and balance": "SELECT balances.available, members.tier FROM balances"
    " JOIN members ON members.member_id = balances.member_id"
    " WHERE balances.member_id = $1 AND members.erased_at IS NULL",
}


def _members_scans(plan: Any) -> Iterator[dict[str, Any]]:
    if isinstance(plan, dict):
        if plan.get("Relation Name") == "members":
            yield plan
        for value in plan.values():
            yield from _members_scans(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from _members_scans(value)


@pytest.mark.parametrize("evaluation", ["unscheduled", "one date"])
@pytest.mark.parametrize("statistics", ["fresh", "analysed"])
async def test_a_member_lookup_uses_the_primary_key(
    infra: Infra, evaluation: str, statistics: str
) -> None:
    url = await migrated_database(infra, "lookup_plan", SERVICE_DIR)
    engine = create_async_engine(url)
    scheduled = "now() + interval '1 year'" if evaluation == "one date" else "NULL"
    try:
        async with engine.begin() as conn:  # committed, as the members of a bulk enrolment
            await conn.execute(
                text(
                    "INSERT INTO members (member_id, timezone, referral_code, next_evaluation_at)"
                    " SELECT 'm-' || i, 'UTC', 'R' || i, "
                    + scheduled
                    + " FROM generate_series(1, 1000) AS i"
                )
            )
            await conn.execute(
                text("INSERT INTO balances (member_id) SELECT member_id FROM members")
            )
        plans = {}
        async with engine.connect() as conn:
            if statistics == "analysed":
                await conn.execute(text("ANALYZE members"))
            # the plan a pooled connection keeps for its prepared statement
            await conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            for i, (name, lookup) in enumerate(LOOKUPS.items()):
                await conn.execute(text(f"PREPARE lookup_{i}(text) AS {lookup}"))
                explain = f"EXPLAIN (FORMAT JSON) EXECUTE lookup_{i}('m-7')"
                plans[name] = (await conn.execute(text(explain))).scalar_one()
    finally:
        await engine.dispose()
    for name, plan in plans.items():
        plan = json.loads(plan) if isinstance(plan, str) else plan
        scans = [scan.get("Index Name") for scan in _members_scans(plan)]
        assert scans == ["pk_members"], (name, json.dumps(plan, indent=1))
