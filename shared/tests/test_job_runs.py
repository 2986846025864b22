"""Periodic jobs: a transient failure is retried until the step succeeds, any other failure
waits for the next turn; every outcome is in ``job_runs`` (real Postgres)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from loyalty_shared.pipeline import Jobs


async def _runs(db: Any) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM job_runs"))).all()
    return {r.job: r for r in rows}


async def test_a_deadlocked_step_is_retried_to_success_and_recorded(events_db: Any) -> None:
    db = events_db
    jobs = Jobs("test", db.sessionmaker)
    calls = 0

    async def deadlocks_twice() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            async with db.sessionmaker() as session, session.begin():
                await session.execute(
                    text("DO $$ BEGIN RAISE EXCEPTION 'd' USING ERRCODE = '40P01'; END $$")
                )
        return "done"

    try:
        assert await jobs.step("expiry", deadlocks_twice, asyncio.Event()) == "done"
    finally:
        await jobs.close()
    assert calls == 3
    run = (await _runs(db))["expiry"]
    assert run.last_succeeded_at is not None and run.consecutive_failures == 0
    assert run.last_failed_at is not None  # the retries are on record too
    assert run.last_duration_seconds is not None


async def test_a_broken_step_is_recorded_with_its_error_and_not_retried_now(
    events_db: Any,
) -> None:
    db = events_db
    jobs = Jobs("test", db.sessionmaker)
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("tier ladder has no Regular tier")

    try:
        for _ in range(2):
            assert await jobs.step("tiers", broken, asyncio.Event()) is None
    finally:
        await jobs.close()
    assert calls == 2  # once per turn
    run = (await _runs(db))["tiers"]
    assert run.last_succeeded_at is None
    assert run.consecutive_failures == 2
    assert run.last_error == "ValueError: tier ladder has no Regular tier"
