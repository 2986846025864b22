"""The tier ladder and the order import while the consumer credits the same members: no 500.

Both lock their members' balance rows in member id order (``PUT /v1/tiers`` its upgrade
candidates', ``POST /v1/orders/batch`` every row it may write, before the first order). A
consumer batch credits its members in the order of its events, so it can still hold one
of them while wanting one the bulk write already holds: Postgres aborts the first of the
two to have waited. The bulk write then runs again (``loyalty_shared.deadlocks``) instead
of answering 500. Each test holds a consumer batch open at that moment (its events are the
real handlers', in one transaction as the consumer runs them); the last runs the writes
while batches flow.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.contracts.feedback import ComplaintGoodwillGrantedV1
from loyalty_shared.deadlocks import is_deadlock
from loyalty_shared.events import CloudEvent
from loyalty_shared.testing import (
    Infra,
    asgi_client,
    eventually,
    migrated_database,
    running_app,
    settings_overrides,
)
from points.actions.handlers import build_handlers
from points.main import create_app
from points.settings import PointsSettings
from points.testing import SERVICE_DIR, enrol, order, sql
from points.worker import build_consumer

LADDER = {
    "tiers": [
        {"code": "regular", "name": "Member", "threshold": 0},
        {"code": "silver", "name": "Silver", "threshold": 1000, "multiplier": "1.25"},
    ],
    "rolling_window_days": 180,
    "growth_point_types": ["purchase"],
    "downgrade_grace_days": 14,
    "evaluation_policy": "anniversary",
}


@dataclass
class Env:
    client: httpx.AsyncClient
    db: str
    settings: PointsSettings
    sessionmaker: async_sessionmaker[AsyncSession]


@pytest.fixture
async def env(infra: Infra) -> AsyncIterator[Env]:
    """A points service on a database of its own (the ladder is everyone's)."""
    db = await migrated_database(infra, "points_bulk", SERVICE_DIR)
    settings = PointsSettings(**settings_overrides(infra, db))
    app = create_app(settings)
    async with running_app(app), asgi_client(app) as client:
        yield Env(client, db, settings, app.state.sessionmaker)


def goodwill(member: str, points: int = 10) -> CloudEvent:
    grant = f"g-{uuid.uuid4().hex[:10]}"
    return ComplaintGoodwillGrantedV1.sample(
        grant_id=grant, member_id=member, points=points, reason="late"
    ).event(member)


async def _members(env: Env, n: int, growth: int) -> list[str]:
    members = sorted([await enrol(env.client) for _ in range(n)])
    await sql(
        env.db,
        "UPDATE balances SET growth_value = :g WHERE member_id = ANY(:m)",
        g=growth,
        m=members,
    )
    for m in members:  # growth value counts over the rolling window: one entry carrying it
        await sql(
            env.db,
            "INSERT INTO ledger_entries (member_id, entry_type, points, source_type, source_id,"
            " idempotency_key, occurred_at, growth_delta)"
            " VALUES (:m, 'adjust', 0, 'test', 'growth', :k, now(), :g)",
            k=f"test-growth:{m}",
            g=growth,
            m=m,
        )
    return members


async def _someone_waits(env: Env) -> bool:
    rows = await sql(
        env.db,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return bool(rows[0][0])


async def _bulk_write_meets_an_open_batch(
    env: Env,
    write: Callable[[], Coroutine[Any, Any, httpx.Response]],
    first: list[CloudEvent],
    then: list[CloudEvent],
) -> httpx.Response:
    """A consumer batch (the consumer's handlers, one transaction): ``first`` is applied,
    ``write`` starts and waits for it, then ``then`` is applied and the batch commits."""
    handlers = build_handlers(env.settings)
    async with env.sessionmaker() as session, session.begin():
        for event in first:
            await handlers[event.type](session, event)
        task = asyncio.create_task(write())
        await eventually(lambda: _someone_waits(env) if not task.done() else True)
        for event in then:
            await handlers[event.type](session, event)
    return await task


async def _available(env: Env, members: list[str]) -> dict[str, int]:
    rows = await sql(
        env.db, "SELECT member_id, available FROM balances WHERE member_id = ANY(:m)", m=members
    )
    return {r[0]: r[1] for r in rows}


async def test_tier_ladder_put_while_a_consumer_batch_credits_its_members(env: Env) -> None:
    members = await _members(env, 12, growth=3000)
    held = members[len(members) // 2]  # the ladder locks the ones before it first
    put = await _bulk_write_meets_an_open_batch(
        env,
        lambda: env.client.put("/v1/tiers", json=LADDER),
        [goodwill(held)],
        [goodwill(m) for m in members if m != held],
    )
    assert put.status_code == 200, put.text
    assert put.json()["members_upgraded"] == len(members)
    tiers = await sql(
        env.db, "SELECT member_id, tier FROM members WHERE member_id = ANY(:m)", m=members
    )
    assert {r[0]: r[1] for r in tiers} == dict.fromkeys(members, "silver")
    assert await _available(env, members) == dict.fromkeys(members, 10)


async def test_order_import_while_a_consumer_batch_credits_its_members(env: Env) -> None:
    members = await _members(env, 12, growth=0)
    start = datetime.now(UTC) - timedelta(hours=1)
    # recorded in occurred_at order: the members in id order, as the import locks them
    orders = [order(m, "20.00", start + timedelta(minutes=i)) for i, m in enumerate(members)]
    held = members[len(members) // 2]
    imported = await _bulk_write_meets_an_open_batch(
        env,
        lambda: env.client.post("/v1/orders/batch", json={"orders": orders}),
        [goodwill(held)],
        [goodwill(m) for m in members if m != held],
    )
    assert imported.status_code == 200, imported.text
    assert imported.json() == {
        "created": len(members),
        "duplicates": 0,
        "failed": [],
        "refunded": 0,
        "refunds_failed": [],
    }
    # each order's 20 points (pending or available) and the goodwill, each once
    rows = await sql(
        env.db,
        "SELECT member_id, available + pending FROM balances WHERE member_id = ANY(:m)",
        m=members,
    )
    assert {r[0]: r[1] for r in rows} == dict.fromkeys(members, 30)


async def test_ladder_and_imports_while_batches_flow_answer_no_500_and_end_right(
    env: Env,
) -> None:
    members = await _members(env, 30, growth=3000)
    consumer = build_consumer(env.settings, env.sessionmaker)
    credited = dict.fromkeys(members, 0)
    stop = asyncio.Event()
    rng = random.Random(15)

    async def batches() -> None:
        """Goodwill for random members in random order, a batch retried as the consumer
        retries one that lost a deadlock."""
        while not stop.is_set():
            batch = [goodwill(m, 1) for m in rng.sample(members, 8)]
            while True:
                try:
                    await consumer._apply(batch)
                    break
                except Exception as exc:
                    if not is_deadlock(exc):
                        raise
            for event in batch:
                credited[event.subject or ""] += 1
            await asyncio.sleep(0)

    feeding = asyncio.create_task(batches())
    answers = []
    start = datetime.now(UTC) - timedelta(hours=1)
    for i in range(3):
        ladder = {**LADDER, "evaluation_policy": ("anniversary", "calendar_year")[i % 2]}
        answers.append(await env.client.put("/v1/tiers", json=ladder))
        chunk = rng.sample(members, 10)
        orders = [order(m, "5.00", start + timedelta(seconds=j)) for j, m in enumerate(chunk)]
        answers.append(await env.client.post("/v1/orders/batch", json={"orders": orders}))
    stop.set()
    await feeding
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert all(a.json()["created"] == 10 for a in answers[1::2])
    rows = await sql(
        env.db,
        "SELECT b.member_id, m.tier, (SELECT coalesce(sum(points), 0) FROM ledger_entries e"
        " WHERE e.member_id = b.member_id AND e.source_type = 'goodwill')"
        " FROM balances b JOIN members m USING (member_id) WHERE b.member_id = ANY(:m)",
        m=members,
    )
    assert {r[0]: r[1] for r in rows} == dict.fromkeys(members, "silver")
    assert {r[0]: r[2] for r in rows} == credited
