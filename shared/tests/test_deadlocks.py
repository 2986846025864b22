"""retry_on_deadlock: a unit that loses a real deadlock runs again; what came before it stays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from loyalty_shared.deadlocks import DatabaseBusy, is_deadlock, retry_on_deadlock
from loyalty_shared.testing import Infra, eventually


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(await infra.create_database("deadlocks"), pool_size=3)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)"))
        await conn.execute(text("CREATE TABLE claims (key text PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO counters VALUES (1, 0), (2, 0)"))
    yield engine
    await engine.dispose()


async def _someone_waits(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


async def _deadlock_against(
    engine: AsyncEngine, session: AsyncSession, attempts: int
) -> tuple[list[int], asyncio.Task[int]]:
    """The unit adds 1 to counters 1 then 2; another transaction, holding counter 2, adds 10
    to it and then to counter 1 once the unit waits: a deadlock the unit (the first to
    wait) loses. Returns the unit's runs and the retried call."""
    runs: list[int] = []
    other = await engine.connect()
    await other.begin()
    await other.execute(text("UPDATE counters SET n = n + 10 WHERE id = 2"))

    async def unit() -> int:
        runs.append(len(runs) + 1)
        for row in (1, 2):
            await session.execute(text("UPDATE counters SET n = n + 1 WHERE id = :id"), {"id": row})
        return len(runs)

    call = asyncio.create_task(retry_on_deadlock(session, unit, attempts=attempts))
    await eventually(lambda: _someone_waits(engine))
    await other.execute(text("UPDATE counters SET n = n + 10 WHERE id = 1"))  # the cycle
    await other.commit()
    await other.close()
    return runs, call


async def _counters(engine: AsyncEngine) -> dict[int, int]:
    async with engine.connect() as conn:
        return {row[0]: row[1] for row in await conn.execute(text("SELECT id, n FROM counters"))}


async def test_a_unit_that_loses_a_deadlock_runs_again_and_keeps_what_came_before(
    engine: AsyncEngine,
) -> None:
    async with AsyncSession(engine) as session, session.begin():
        await session.execute(text("INSERT INTO claims VALUES ('before the unit')"))
        runs, call = await _deadlock_against(engine, session, attempts=3)
        assert await call == 2
    assert runs == [1, 2]
    # the other transaction's writes and the second run's, each once
    assert await _counters(engine) == {1: 11, 2: 11}
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT key FROM claims")) == "before the unit"


async def test_a_unit_that_keeps_losing_is_a_503_and_changes_nothing(
    engine: AsyncEngine,
) -> None:
    async with AsyncSession(engine) as session, session.begin():
        runs, call = await _deadlock_against(engine, session, attempts=1)
        with pytest.raises(DatabaseBusy) as busy:
            await call
        assert busy.value.status == 503 and busy.value.to_dict()["type"].endswith("database-busy")
        assert is_deadlock(busy.value)
        # the transaction goes on after the savepoint was rolled back
        await session.execute(text("INSERT INTO claims VALUES ('after')"))
    assert runs == [1]
    assert await _counters(engine) == {1: 10, 2: 10}


async def test_other_errors_are_not_retried(engine: AsyncEngine) -> None:
    runs: list[int] = []

    async def unit() -> None:
        runs.append(1)
        await session.execute(text("INSERT INTO claims VALUES ('twice'), ('twice')"))

    async with AsyncSession(engine) as session, session.begin():
        with pytest.raises(sa_exc.IntegrityError):
            await retry_on_deadlock(session, unit)
    assert runs == [1]
    assert not is_deadlock(ValueError("deadlock detected"))
    assert is_deadlock(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
    assert is_deadlock(asyncpg.exceptions.SerializationError("could not serialize"))
