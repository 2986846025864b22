"""Recompute jobs: recovery from a crashed runner (stale heartbeat, orphaned running row),
one recompute at a time, and a job failed as stale never commits its scores."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from loyalty_shared.testing import eventually
from segmentation.analytics import jobs
from segmentation.main import create_app
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id, order

AS_OF = "2026-01-01T00:00:00+00:00"
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('segmentation-recompute'))")


async def _crashed_job(
    env: FreshSegmentation, status: str = "running", heartbeat_age_s: int = 600
) -> str:
    """A job row as a process that died mid-run leaves it."""
    job_id = f"job_crashed_{uuid.uuid4().hex[:8]}"
    async with env.app.state.sessionmaker() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO jobs (job_id, kind, status, progress, step, as_of, created_at, "
                "started_at, heartbeat_at) VALUES (:id, 'recompute', :status, 0.3, 'ranks', "
                "now(), now() - make_interval(secs => :age), now() - make_interval(secs => :age), "
                "now() - make_interval(secs => :age))"
            ),
            {"id": job_id, "status": status, "age": heartbeat_age_s},
        )
    return job_id


async def _job(env: FreshSegmentation, job_id: str) -> dict:  # type: ignore[type-arg]
    return (await env.client.get(f"/v1/jobs/{job_id}")).json()  # type: ignore[no-any-return]


async def test_stale_running_job_is_failed_and_a_new_recompute_runs(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m = member_id()
    await env.feed(enrolled(m), order(m, "2025-12-20", "10.00"))
    crashed = await _crashed_job(env, heartbeat_age_s=env.settings.job_stale_after_seconds + 60)
    job = await env.recompute(AS_OF)  # 202, runs and succeeds
    assert job["status"] == "succeeded" and job["heartbeat_at"] is not None
    stale = await _job(env, crashed)
    assert stale["status"] == "failed"
    assert stale["error"].startswith("stale: no heartbeat since")
    assert stale["finished_at"] is not None
    profile = (await env.client.get(f"/v1/profiles/{m}")).json()
    assert profile["scores_as_of"].startswith("2026-01-01")


async def test_running_row_without_a_lock_holder_is_failed_at_once(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """The process died a moment ago (heartbeat still fresh): nobody holds the recompute lock,
    so the row cannot be a live run and does not block a new recompute."""
    env = fresh_segmentation
    crashed = await _crashed_job(env, heartbeat_age_s=1)
    await env.recompute(AS_OF)
    orphan = await _job(env, crashed)
    assert orphan["status"] == "failed" and orphan["error"] == jobs.ORPHANED


async def test_startup_recovery_fails_stale_jobs_in_api_and_worker(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    stale_queued = await _crashed_job(env, status="queued")
    fresh_queued = await _crashed_job(env, status="queued", heartbeat_age_s=0)
    # the API's start-up hook
    from loyalty_shared.testing import running_app

    async with running_app(create_app(env.settings)):
        pass
    assert (await _job(env, stale_queued))["status"] == "failed"
    # a queued job whose runner is alive (fresh heartbeat) is left alone
    assert (await _job(env, fresh_queued))["status"] == "queued"
    # the worker's loop recovers at start-up too (then waits for the daily run)
    running = await _crashed_job(env, status="running", heartbeat_age_s=1)
    daily = jobs.DailyRecompute(env.settings, env.app.state.sessionmaker)
    stop = asyncio.Event()
    loop = asyncio.create_task(daily.run(stop))

    async def failed() -> bool:
        return bool((await _job(env, running))["status"] == "failed")

    await eventually(failed)
    stop.set()
    await loop
    assert (await _job(env, running))["error"] == jobs.ORPHANED
    async with env.app.state.sessionmaker() as s, s.begin():
        await s.execute(text("DELETE FROM jobs WHERE job_id = :id"), {"id": fresh_queued})


async def test_one_recompute_at_a_time(fresh_segmentation: FreshSegmentation) -> None:
    env = fresh_segmentation
    sessionmaker = env.app.state.sessionmaker
    # a live runner elsewhere holds the recompute lock: a new request is refused with its id
    live = await _crashed_job(env, status="running", heartbeat_age_s=0)
    holder = sessionmaker()
    await holder.execute(_LOCK)
    try:
        busy = await env.client.post("/v1/analytics/recompute", json={"as_of": AS_OF})
        assert busy.status_code == 409, busy.text
        problem = busy.json()
        assert problem["type"].endswith("recompute-in-progress") and problem["job_id"] == live
        assert (await _job(env, live))["status"] == "running"  # alive: not failed
        # the database refuses a second running recompute whatever the code does
        with pytest.raises(IntegrityError):
            async with sessionmaker() as s, s.begin():
                await s.execute(
                    text(
                        "INSERT INTO jobs (job_id, kind, status, as_of) "
                        "VALUES (:id, 'recompute', 'running', now())"
                    ),
                    {"id": f"job_{uuid.uuid4().hex}"},
                )
        # a queued run waits for the lock (still queued, heartbeating) instead of running
        fast = env.settings.model_copy(update={"job_heartbeat_seconds": 0.05})
        async with sessionmaker() as s, s.begin():
            waiting = await jobs.create_job(s, datetime(2026, 1, 1, tzinfo=UTC))
        assert waiting is not None
        runner = asyncio.create_task(jobs.run_job(sessionmaker, fast, waiting))
        first_beat = (await _job(env, waiting))["heartbeat_at"]

        async def beaten() -> bool:
            return bool((await _job(env, waiting))["heartbeat_at"] != first_beat)

        await eventually(beaten)
        assert (await _job(env, waiting))["status"] == "queued"
    finally:
        await holder.close()  # the live runner dies: its lock goes with its transaction
    await runner
    assert (await _job(env, waiting))["status"] == "succeeded"
    assert (await _job(env, live))["error"] == jobs.ORPHANED


async def test_a_job_failed_as_stale_while_it_waits_never_runs(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """A frozen runner whose job was failed as stale abandons it (no scores committed)."""
    env = fresh_segmentation
    sessionmaker = env.app.state.sessionmaker
    m = member_id()
    await env.feed(enrolled(m), order(m, "2025-12-20", "10.00"))
    fast = env.settings.model_copy(update={"job_heartbeat_seconds": 0.05})
    holder = sessionmaker()
    await holder.execute(_LOCK)
    try:
        async with sessionmaker() as s, s.begin():
            job_id = await jobs.create_job(s, datetime(2026, 1, 1, tzinfo=UTC))
        assert job_id is not None
        runner = asyncio.create_task(jobs.run_job(sessionmaker, fast, job_id))
        async with sessionmaker() as s, s.begin():  # as another process's recovery would
            await s.execute(
                text("UPDATE jobs SET status = 'failed', error = 'stale' WHERE job_id = :id"),
                {"id": job_id},
            )
        await runner  # the heartbeat sees the row is not ours any more and stops the run
    finally:
        await holder.close()
    job = await _job(env, job_id)
    assert job["status"] == "failed" and job["error"] == "stale" and job["started_at"] is None

    async def lock_free() -> bool:  # the abandoned runner's wait for the lock was cancelled
        rows = await env.sql("SELECT pg_try_advisory_xact_lock(hashtext('segmentation-recompute'))")
        return bool(rows[0][0])

    await eventually(lock_free)
    profile = (await env.client.get(f"/v1/profiles/{m}")).json()
    assert profile["scores_as_of"] is None


async def test_recompute_idempotency_key_replays_the_first_job(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await env.client.post("/v1/analytics/recompute", json={"as_of": AS_OF}, headers=key)
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    again = await env.client.post("/v1/analytics/recompute", json={"as_of": AS_OF}, headers=key)
    assert again.status_code == 202 and again.json() == first.json()  # not a 409, same job

    async def finished() -> bool:
        return bool((await _job(env, job_id))["status"] == "succeeded")

    await eventually(finished, timeout=60)
    later = await env.client.post("/v1/analytics/recompute", json={"as_of": AS_OF}, headers=key)
    assert later.json()["job_id"] == job_id  # still the same job: no second run
    other = await env.client.post(
        "/v1/analytics/recompute", json={"as_of": "2026-02-01T00:00:00+00:00"}, headers=key
    )
    assert other.status_code == 409 and other.json()["type"].endswith("idempotency-key-reused")
    count = await env.sql("SELECT count(*) FROM jobs WHERE kind = 'recompute'")
    assert count[0][0] == 1
