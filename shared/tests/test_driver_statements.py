"""CompiledStatement + driver_connection: hot-path SQL on the session's own transaction."""

from __future__ import annotations

import asyncio
import gc
import uuid
import warnings
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from loyalty_shared.db import (
    CompiledStatement,
    HotTransaction,
    driver_connection,
    make_metadata,
)
from loyalty_shared.hotpath.pool import DriverAutocommit
from loyalty_shared.testing import Infra

metadata = make_metadata()
rows = Table(
    "rows",
    metadata,
    Column("key", String, primary_key=True),
    Column("points", BigInteger, nullable=False),
    Column("doc", JSONB),
)
INSERT = CompiledStatement(
    insert(rows)
    .values(key=bindparam("p_key"), points=bindparam("p_points"), doc=bindparam("p_doc"))
    .returning(rows.c.key, rows.c.doc)
)
# the literal 0 is a parameter the statement carries itself
TOTAL = CompiledStatement(
    select(func.coalesce(func.sum(rows.c.points), 0).label("total")).where(
        rows.c.key.like(bindparam("p_prefix", type_=String) + "%")
    )
)


def in_use(engine: AsyncEngine) -> int:
    """Connections checked out of the pool."""
    pool = engine.sync_engine.pool
    assert isinstance(pool, AsyncAdaptedQueuePool)
    return pool.checkedout()


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    # the pool the services' engines have (loyalty_shared.db.create_engine)
    engine = create_async_engine(await infra.create_database("driver"))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def test_json_parameters_literals_and_results_round_trip(engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(engine)
    prefix = uuid.uuid4().hex
    async with sessions() as session, session.begin():
        conn = await driver_connection(session)
        row = await INSERT.fetchrow(
            conn, {"p_key": f"{prefix}-1", "p_points": 5, "p_doc": {"a": [1, "x"], "b": None}}
        )
        assert row["doc"] == {"a": [1, "x"], "b": None}
        await INSERT.fetchrow(conn, {"p_key": f"{prefix}-2", "p_points": 7, "p_doc": None})
        assert (await TOTAL.fetchrow(conn, {"p_prefix": prefix}))["total"] == 12
    async with sessions() as session, session.begin():
        conn = await driver_connection(session)
        assert (await TOTAL.fetchrow(conn, {"p_prefix": "no-such-prefix"}))["total"] == 0


async def test_driver_statements_share_the_session_transaction(engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(engine)
    prefix = uuid.uuid4().hex

    async def failing_request() -> None:
        async with sessions() as session, session.begin():
            conn = await driver_connection(session)  # nothing ran through SQLAlchemy yet
            await INSERT.fetchrow(conn, {"p_key": f"{prefix}-a", "p_points": 1, "p_doc": {}})
            # and a statement through the session sees the driver's uncommitted row
            seen = await session.scalar(select(func.count()).where(rows.c.key == f"{prefix}-a"))
            assert seen == 1
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        await failing_request()
    async with sessions() as session, session.begin():
        conn = await driver_connection(session)
        assert (await TOTAL.fetchrow(conn, {"p_prefix": prefix}))["total"] == 0  # rolled back


async def test_a_session_gets_its_current_transactions_connection_after_a_commit(
    engine: AsyncEngine,
) -> None:
    sessions = async_sessionmaker(engine)
    prefix = uuid.uuid4().hex
    async with sessions() as session:
        async with session.begin():
            first = await driver_connection(session)
            assert await driver_connection(session) is first  # remembered per transaction
            await INSERT.fetchrow(first, {"p_key": f"{prefix}-1", "p_points": 2, "p_doc": None})
        async with session.begin():
            second = await driver_connection(session)
            await INSERT.fetchrow(second, {"p_key": f"{prefix}-2", "p_points": 3, "p_doc": None})
            assert second.is_in_transaction()
    async with sessions() as session, session.begin():
        conn = await driver_connection(session)
        assert (await TOTAL.fetchrow(conn, {"p_prefix": prefix}))["total"] == 5


def test_expanding_parameters_are_refused_when_the_statement_is_built() -> None:
    with pytest.raises(TypeError, match="expanding"):
        CompiledStatement(
            select(rows.c.key).where(rows.c.key.in_(bindparam("keys", expanding=True)))
        )


async def test_a_hot_transaction_commits_driver_and_session_statements_together(
    engine: AsyncEngine,
) -> None:
    prefix = uuid.uuid4().hex
    async with HotTransaction(engine) as session:
        conn = await driver_connection(session)
        await INSERT.fetchrow(conn, {"p_key": f"{prefix}-1", "p_points": 4, "p_doc": None})
        # the rare paths use the session: same transaction, sees the driver's row
        await session.execute(insert(rows).values(key=f"{prefix}-2", points=6))
        assert (
            await session.scalar(
                select(func.sum(rows.c.points)).where(rows.c.key.like(f"{prefix}%"))
            )
            == 10
        )
    async with HotTransaction(engine) as session:
        conn = await driver_connection(session)
        assert (await TOTAL.fetchrow(conn, {"p_prefix": prefix}))["total"] == 10


async def test_a_failed_hot_transaction_leaves_nothing_and_frees_its_connection(
    engine: AsyncEngine,
) -> None:
    prefix = uuid.uuid4().hex

    async def failing_request() -> None:
        async with HotTransaction(engine) as session:
            conn = await driver_connection(session)
            await INSERT.fetchrow(conn, {"p_key": f"{prefix}-1", "p_points": 4, "p_doc": None})
            await session.execute(insert(rows).values(key=f"{prefix}-2", points=6))
            raise RuntimeError("the request failed")

    for _ in range(engine.pool.size() + 2):  # type: ignore[attr-defined]  # a leak exhausts it
        with pytest.raises(RuntimeError):
            await failing_request()
    async with HotTransaction(engine) as session:
        conn = await driver_connection(session)
        assert (await TOTAL.fetchrow(conn, {"p_prefix": prefix}))["total"] == 0
    assert in_use(engine) == 0


async def test_driver_autocommit_commits_each_statement_and_drops_a_cancelled_connection(
    engine: AsyncEngine,
) -> None:
    prefix = uuid.uuid4().hex
    async with DriverAutocommit(engine) as conn:
        await INSERT.fetchrow(conn, {"p_key": f"{prefix}-a", "p_points": 5, "p_doc": None})
        # committed by itself: another connection sees it while this one is still out
        async with engine.connect() as other:
            seen = (
                await other.execute(select(func.count()).where(rows.c.key.like(f"{prefix}%")))
            ).scalar_one()
        assert seen == 1
    async with DriverAutocommit(engine) as conn:
        assert not conn.is_in_transaction()

    async def fail() -> None:
        async with DriverAutocommit(engine) as conn:
            await INSERT.fetchrow(conn, {"p_key": f"{prefix}-b", "p_points": 1, "p_doc": None})
            failed.append(await conn.fetchval("SELECT pg_backend_pid()"))
            # cancelled mid-statement: the connection may be anywhere in the protocol
            await asyncio.wait_for(conn.execute("SELECT pg_sleep(5)"), 0.2)

    failed: list[int] = []
    with pytest.raises(TimeoutError):
        await fail()
    # after a cancellation the connection is discarded (its insert had committed already)
    async with DriverAutocommit(engine) as one, DriverAutocommit(engine) as two:
        pids = {await c.fetchval("SELECT pg_backend_pid()") for c in (one, two)}
        total = await TOTAL.fetchrow(one, {"p_prefix": prefix})
    assert failed[0] not in pids
    assert total["total"] == 6
    assert in_use(engine) == 0


async def test_driver_autocommit_keeps_the_connection_after_an_error_between_statements(
    engine: AsyncEngine,
) -> None:
    class NotFound(Exception):
        pass

    pids: list[int] = []

    async def not_found() -> None:
        async with DriverAutocommit(engine) as conn:
            pids.append(await conn.fetchval("SELECT pg_backend_pid()"))
            raise NotFound  # a 404 after a statement: nothing wrong with the connection

    async def failed_statement() -> None:
        async with DriverAutocommit(engine) as conn:
            pids.append(await conn.fetchval("SELECT pg_backend_pid()"))
            await conn.execute(
                "CREATE TEMP TABLE t (k int PRIMARY KEY); INSERT INTO t VALUES (1), (1)"
            )

    for _ in range(2):
        with pytest.raises(NotFound):
            await not_found()
    with pytest.raises(asyncpg.UniqueViolationError):
        await failed_statement()
    async with DriverAutocommit(engine) as conn:
        pids.append(await conn.fetchval("SELECT pg_backend_pid()"))
    assert len(set(pids)) == 1  # one connection, reused every time


async def _backend_pid(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def _pool_engine(
    infra: Infra, size: int, **options: Any
) -> tuple[str, AsyncEngine, AsyncAdaptedQueuePool]:
    url = await infra.create_database("pooled")
    engine = create_async_engine(url, pool_size=size, max_overflow=0, **options)
    pool = engine.sync_engine.pool
    assert isinstance(pool, AsyncAdaptedQueuePool)
    return url, engine, pool


async def test_driver_autocommit_gives_its_connection_back_to_the_pool_for_anyone(
    infra: Infra,
) -> None:
    _, engine, pool = await _pool_engine(infra, 1)
    try:
        async with DriverAutocommit(engine) as conn:
            first = await _backend_pid(conn)
        assert (pool.checkedout(), pool.checkedin()) == (0, 1)
        async with DriverAutocommit(engine) as conn:  # from the pool: the same connection
            assert await _backend_pid(conn) == first
        async with engine.connect() as other:
            pid = (await other.execute(select(func.pg_backend_pid()))).scalar_one()
        assert pid == first
        assert (pool.checkedout(), pool.checkedin()) == (0, 1)

        # someone waiting in the pool gets the connection as soon as it is given back
        async def session_pid() -> int:
            async with engine.connect() as waiting:
                return int((await waiting.execute(select(func.pg_backend_pid()))).scalar_one())

        async with DriverAutocommit(engine) as conn:
            waiter = asyncio.create_task(session_pid())
            await asyncio.sleep(0.2)
            assert not waiter.done()  # the pool's only connection is out
        assert await asyncio.wait_for(waiter, 5) == first  # well before the pool's 30 s
    finally:
        await engine.dispose()


async def test_a_pooled_connection_the_server_closed_is_replaced_and_dispose_closes_all(
    infra: Infra,
) -> None:
    url, engine, pool = await _pool_engine(infra, 2)
    admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    database = url.rsplit("/", 1)[1].split("?")[0]

    async def backends() -> set[int]:
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        return {row["pid"] for row in rows}

    try:
        async with DriverAutocommit(engine) as conn:
            first = await _backend_pid(conn)
        assert pool.checkedin() == 1
        await admin.execute("SELECT pg_terminate_backend($1)", first)
        for _ in range(50):  # until the client has seen the connection go
            if first not in await backends():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        async with DriverAutocommit(engine) as conn:
            second = await _backend_pid(conn)
            assert await conn.fetchval("SELECT 1") == 1
        assert second != first
        assert in_use(engine) == 0 and pool.checkedin() == 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await engine.dispose()  # every connection closed: none stays open
            gc.collect()
        # (not left to the garbage collector, which warns that it closes them)
        assert [str(w.message) for w in caught] == []
        for _ in range(50):
            if not await backends():
                break
            await asyncio.sleep(0.05)
        assert await backends() == set()
    finally:
        await admin.close()
        await engine.dispose()


async def test_a_pooled_connection_due_for_recycling_is_opened_again(infra: Infra) -> None:
    _, engine, pool = await _pool_engine(infra, 1, pool_recycle=1)
    try:
        async with DriverAutocommit(engine) as conn:
            first = await _backend_pid(conn)
        async with DriverAutocommit(engine) as conn:  # within pool_recycle: the same one
            assert await _backend_pid(conn) == first
        await asyncio.sleep(1.2)
        async with DriverAutocommit(engine) as conn:
            assert await _backend_pid(conn) != first
        assert in_use(engine) == 0 and pool.checkedin() == 1
    finally:
        await engine.dispose()


async def test_a_connection_left_inside_a_transaction_is_not_kept(infra: Infra) -> None:
    _, engine, pool = await _pool_engine(infra, 1)
    try:
        async with DriverAutocommit(engine) as conn:
            first = await _backend_pid(conn)
            await conn.execute("BEGIN")  # by hand, and never ended: nobody else may get it
        assert pool.checkedout() == 0
        async with DriverAutocommit(engine) as conn:
            assert await _backend_pid(conn) != first
            assert not conn.is_in_transaction()
        assert in_use(engine) == 0
    finally:
        await engine.dispose()
