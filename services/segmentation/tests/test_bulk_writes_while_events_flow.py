"""Writes over many profiles while the consumer writes some of them: never a 500 for a deadlock.

A consumer batch locks its members' profiles in the order of its events. The bulk writes
(strategy matrix, a rule tag's refresh, the recompute) take the profiles table lock before
any profile row (``profiles.service.lock_profiles_for_bulk_write``), so they wait for a
batch in progress instead of meeting it halfway, and are retried if they lose a deadlock
all the same (``loyalty_shared.deadlocks``).

The first tests hold a consumer batch open at the worst moment: it has written one profile
in the middle of the table, the bulk write starts and waits for it, then the batch writes
every other profile. Without the table lock the bulk UPDATE holds the rows it reached
before that one (in a sequential scan's or a hash join's order, the middle is reached
after others): a deadlock in which the bulk write, the first to wait, is the one Postgres
aborts. The last test runs them all while batches flow, and checks every end state.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from sqlalchemy import text

from loyalty_shared.deadlocks import is_deadlock
from loyalty_shared.events import CloudEvent
from loyalty_shared.testing import eventually
from segmentation.profiles.handlers import HANDLERS
from segmentation.segments.batch import refresh_all
from segmentation.segments.live import defer_refresh, flush_refresh
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, interaction, member_id, order

AS_OF = "2026-01-01T00:00:00+00:00"
MATRIX = {
    "rules": [
        {"family": "everyone", "strategies": ["say thanks"]},
        {"family": "lifecycle:activation", "lifecycle": "new", "strategies": ["call them"]},
    ]
}


async def _population(env: FreshSegmentation, n: int) -> list[str]:
    members = sorted(member_id() for _ in range(n))
    events: list[CloudEvent] = []
    for m in members:
        events += [enrolled(m), order(m, "2025-12-01", "30.00")]
    await env.feed(*events)
    await env.recompute(AS_OF)
    return members


async def _middle_first(env: FreshSegmentation) -> list[str]:
    """Every profile, the one in the middle of the heap (a scan's order) first."""
    heap = [r[0] for r in await env.sql("SELECT member_id FROM profiles ORDER BY ctid")]
    middle = heap[len(heap) // 2]
    return [middle] + [m for m in heap if m != middle]


def _logins(members: list[str]) -> list[CloudEvent]:
    return [interaction(m, "login", "2025-12-02") for m in members]


async def _waiting_for_a_lock(env: FreshSegmentation) -> bool:
    rows = await env.sql(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(rows[0][0])


async def _apply(session: Any, events: list[CloudEvent]) -> None:
    for event in events:
        await HANDLERS[event.type](session, event)


async def _bulk_write_meets_an_open_batch(
    env: FreshSegmentation,
    write: Callable[[], Coroutine[Any, Any, httpx.Response]],
    first: list[CloudEvent],
    then: list[CloudEvent],
) -> httpx.Response:
    """One consumer batch (the consumer's handlers, one transaction): ``first`` is applied,
    ``write`` starts and waits for the batch, then ``then`` is applied and the batch commits."""
    async with env.app.state.sessionmaker() as session, session.begin():
        defer_refresh(session)
        await _apply(session, first)
        task = asyncio.create_task(write())
        await eventually(lambda: _waiting_for_a_lock(env) if not task.done() else True)
        await _apply(session, then)
        await flush_refresh(session)
    return await task


async def test_strategy_matrix_waits_for_a_consumer_batch_instead_of_deadlocking(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    members = await _population(env, 12)
    held, *others = await _middle_first(env)
    put = await _bulk_write_meets_an_open_batch(
        env,
        lambda: env.client.put("/v1/strategy-matrix", json=MATRIX),
        _logins([held]),
        _logins(others),
    )
    assert put.status_code == 200, put.text
    rows = await env.sql("SELECT member_id, strategies, logins FROM profiles")
    assert {r[0]: (r[1], r[2]) for r in rows} == dict.fromkeys(
        members, (["call them", "say thanks"], 1)
    )


async def test_rule_tag_refresh_waits_for_a_consumer_batch_instead_of_deadlocking(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    members = await _population(env, 12)
    held, *others = await _middle_first(env)
    tag = await _bulk_write_meets_an_open_batch(
        env,
        lambda: env.client.post(
            "/v1/tags", json={"name": "buyer", "kind": "rule", "condition": "order_count >= 1"}
        ),
        _logins([held]),
        _logins(others),
    )
    assert tag.status_code == 201, tag.text
    rows = await env.sql("SELECT member_id, rule_tags FROM profiles")
    assert {r[0]: r[1] for r in rows} == {m: ["buyer"] for m in members}


async def test_recompute_waits_for_a_consumer_batch_instead_of_deadlocking(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    members = await _population(env, 12)
    held, *others = await _middle_first(env)
    accepted: dict[str, Any] = {}

    async def recompute() -> httpx.Response:
        response = await env.client.post("/v1/analytics/recompute", json={"as_of": AS_OF})
        accepted["job_id"] = response.json().get("job_id")
        return response

    response = await _bulk_write_meets_an_open_batch(
        env, recompute, _logins([held]), _logins(others)
    )
    assert response.status_code == 202, response.text

    async def finished() -> dict[str, Any] | None:
        job = (await env.client.get(f"/v1/jobs/{accepted['job_id']}")).json()
        return job if job["status"] in {"succeeded", "failed"} else None

    job = await eventually(finished, timeout=60)
    assert job["status"] == "succeeded", job
    rows = await env.sql("SELECT member_id, logins, scores_as_of IS NOT NULL FROM profiles")
    assert {r[0]: (r[1], r[2]) for r in rows} == dict.fromkeys(members, (1, True))


async def test_bulk_writes_while_batches_flow_answer_no_500_and_end_right(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    members = await _population(env, 30)
    logins = dict.fromkeys(members, 0)
    stop = asyncio.Event()
    rng = random.Random(15)

    async def consumer() -> None:
        """Batches of logins of random members in random order, retried as the consumer
        retries a batch that lost a deadlock."""
        while not stop.is_set():
            batch = [interaction(m, "login", "2025-12-03") for m in rng.sample(members, 10)]
            while True:
                try:
                    await env.feed(*batch)
                    break
                except Exception as exc:
                    if not is_deadlock(exc):
                        raise
            for event in batch:
                logins[event.data["member_id"]] += 1
            await asyncio.sleep(0)

    feeding = asyncio.create_task(consumer())
    answers = []
    for i in range(3):
        answers.append(await env.client.put("/v1/strategy-matrix", json=MATRIX))
        answers.append(
            await env.client.post(
                "/v1/tags",
                json={"name": f"buyer{i}", "kind": "rule", "condition": f"logins >= {i}"},
            )
        )
        answers.append(
            await env.client.post(
                "/v1/segments", json={"name": f"s{i}", "condition": f"logins > {i}"}
            )
        )
    job = await env.recompute(AS_OF)
    stop.set()
    await feeding
    assert [a.status_code for a in answers] == [200, 201, 201] * 3, [a.text for a in answers]
    assert job["status"] == "succeeded"

    rows = await env.sql("SELECT member_id, logins, strategies FROM profiles")
    assert {r[0]: r[1] for r in rows} == logins
    assert all(r[2] == ["call them", "say thanks"] for r in rows)
    # tags and memberships are what a refresh from scratch finds, and the counts match
    async with env.app.state.sessionmaker() as session:
        changes = await refresh_all(session, "check")
        assert all(c == {"entered": 0, "left": 0} for c in changes.values()), changes
        counts = await session.execute(
            text(
                "SELECT s.member_count, (SELECT count(*) FROM segment_members m "
                "WHERE m.segment_id = s.segment_id) FROM segments s"
            )
        )
        assert all(kept == actual for kept, actual in counts.all())
        await session.rollback()
