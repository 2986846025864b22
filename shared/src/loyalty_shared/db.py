"""Async engine, one-transaction-per-request session dependency, metadata conventions."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, cast

import asyncpg
import orjson
from fastapi import Depends, Request
from sqlalchemy import ClauseElement, Engine, MetaData
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.sql.compiler import SQLCompiler

from loyalty_shared import jsontext
from loyalty_shared.fifo_slots import FifoSlots
from loyalty_shared.settings import CommonSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class FairGate(FifoSlots):
    """First come, first served admission to a connection pool.

    SQLAlchemy's async pool hands a returned connection to whoever asks next: a request
    that arrives just then takes it (``get_nowait``) and the waiter that was woken for it
    goes back to the *end* of the queue (asyncio.Queue's ``get``). Under a steady load
    above the pool's size some requests lose that race again and again: measured on
    checkout, p99 was 4-5x p50, and 2x once the pool never had to wait. Requests pass
    this gate before they take a connection: it has as many slots as the pool, a freed
    slot goes straight to the longest waiter, and a request that arrives meanwhile queues
    behind it. So the pool itself never has to wait, and the order is the arrival order.
    (``FifoSlots``, with a timeout: ``sa_exc.TimeoutError``, a 503.)
    """

    __slots__ = ("_timeout_s",)

    def __init__(self, slots: int, timeout_s: float) -> None:
        super().__init__(slots)
        self._timeout_s = timeout_s

    async def acquire(self) -> None:
        if self.take_free():
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self.wait()
        except TimeoutError as exc:
            raise sa_exc.TimeoutError(
                f"no database connection came free within {self._timeout_s:g} s"
            ) from exc


_GATES: weakref.WeakKeyDictionary[Engine, FairGate] = weakref.WeakKeyDictionary()


class pool_slot:
    """Hold one of the engine's pool slots (FIFO) around a request's use of a connection.

    (A plain object rather than an ``asynccontextmanager``: every request that touches the
    database passes here, and the generator machinery cost more than the gate.)
    """

    __slots__ = ("_gate",)

    def __init__(self, engine: AsyncEngine, *, held: bool = False) -> None:
        # an engine not made by create_engine has no gate: the pool alone; ``held``: the
        # caller already holds a slot for this use (one slot for several steps in turn)
        self._gate = None if held else _GATES.get(engine.sync_engine)

    async def __aenter__(self) -> None:
        if self._gate is not None:
            await self._gate.acquire()

    async def __aexit__(self, *exc: object) -> None:
        if self._gate is not None:
            self._gate.release()


def create_engine(settings: CommonSettings) -> AsyncEngine:
    engine = create_async_engine(
        settings.sqlalchemy_url(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=False,
        poolclass=AsyncAdaptedQueuePool,
        # Errors (and the logs and dead letters they reach) show the SQL, never its
        # parameters: those are members' data.
        hide_parameters=True,
        # JSON/JSONB parameters and results through orjson (the stdlib's json showed up
        # in profiles of the hot paths: several documents per order).
        json_serializer=jsontext.dumps,
        json_deserializer=orjson.loads,
        # asyncpg's statement cache is on by default; keep it for the hot paths.
        # service and process in pg_stat_activity: which replica holds a lock, runs a query
        connect_args={
            "server_settings": {"application_name": f"{settings.service_name}:{os.getpid()}"}
        },
    )
    _GATES[engine.sync_engine] = FairGate(
        settings.db_pool_size + settings.db_max_overflow, settings.db_pool_timeout_seconds
    )
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit when the endpoint returns, roll back if it raises.

    Used with ``scope="function"`` so the commit happens *before* the response
    is sent: a client never sees a 2xx for a write that did not commit.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with pool_slot(request.app.state.engine), sessionmaker() as session, session.begin():
        yield session


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


# --- hot paths: Core statements compiled once, run on the session's asyncpg connection ---

_DRIVER_DIALECT = postgresql_asyncpg.dialect(json_serializer=jsontext.dumps)  # type: ignore[no-untyped-call]


class CompiledStatement:
    """A Core statement compiled once for asyncpg, then only bound and executed.

    ``session.execute(statement)`` walks the whole statement to build its cache key, then
    goes through the result layer, on every call; for the few statements every checkout
    runs that was a large share of the request's CPU. This keeps the statement written
    in Core (the tables' column names and types are checked when it is built) and runs
    the SQL text on the asyncpg connection under the session's transaction.
    Parameters are passed by name, like ``session.execute``; JSON parameters take Python
    values (serialised here, like SQLAlchemy would). Rows are asyncpg ``Record`` objects.
    """

    def __init__(self, statement: ClauseElement) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=_DRIVER_DIALECT))
        self.sql = str(compiled)
        names = compiled.positiontup
        if names is None:  # pragma: no cover - asyncpg's dialect is positional
            raise TypeError("expected a positional (numeric) paramstyle")
        self._names: tuple[str, ...] = tuple(names)
        binds = compiled.binds
        for name in self._names:
            if binds[name].expanding:
                raise TypeError(f"{name}: expanding (IN) parameters are not supported here")
        # literal values inside the statement (e.g. coalesce(sum(x), 0)) are parameters too
        self._fixed = {name: binds[name].value for name in self._names if not binds[name].required}
        processors = compiled._bind_processors
        self._plain = all(name not in processors for name in self._names)
        self._slots: tuple[tuple[str, Any], ...] = tuple(
            (name, processors.get(name)) for name in self._names
        )

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        if self._fixed:
            params = {**self._fixed, **params}
        if self._plain:
            return [params[name] for name in self._names]
        return [
            value if process is None or value is None else process(value)
            for name, process in self._slots
            for value in (params[name],)
        ]

    async def fetchrow(self, conn: asyncpg.Connection, params: Mapping[str, Any]) -> Any:
        return await conn.fetchrow(self.sql, *self.arguments(params))

    async def fetch(self, conn: asyncpg.Connection, params: Mapping[str, Any]) -> list[Any]:
        return list(await conn.fetch(self.sql, *self.arguments(params)))


_DRIVER_KEY = "loyalty.driver_connection"
_ANY_TRANSACTION = object()  # a HotTransaction's session: one connection for its whole life


async def _begun_driver(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under ``conn``, its transaction begun (``BEGIN`` sent).

    SQLAlchemy's asyncpg adapter begins lazily, at the first statement it runs itself;
    statements run on the driver directly need it begun. (The adapter's attributes are
    private: the version is pinned in uv.lock and every hot path's tests go through here.)
    """
    fairy = await conn.get_raw_connection()
    adapter: Any = fairy.dbapi_connection
    if adapter is None:  # pragma: no cover - a checked-out connection always has one
        raise RuntimeError("connection is not checked out")
    if adapter._transaction is None:
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                await adapter._start_transaction()
    return cast(asyncpg.Connection, fairy.driver_connection)


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of the session's transaction, with the transaction begun.

    Statements run on it are part of the session's transaction: the request's commit
    (or rollback) covers them. SQLAlchemy begins the asyncpg transaction lazily, at the
    first statement it runs itself, so this begins it when nothing has run yet.
    """
    cached = session.info.get(_DRIVER_KEY)
    if cached is not None and (
        cached[0] is _ANY_TRANSACTION or cached[0] is session.sync_session.get_transaction()
    ):
        return cast(asyncpg.Connection, cached[1])
    conn = await session.connection()
    driver = await _begun_driver(conn)
    # remembered for this transaction only: after a commit the connection may go back to the pool
    session.info[_DRIVER_KEY] = (session.sync_session.get_transaction(), driver)
    return driver


class HotTransaction:
    """One request's transaction for the hottest routes, with less bookkeeping than a session.

    A pooled connection, ``BEGIN`` on its asyncpg connection, and an ``AsyncSession`` joined
    to that transaction for whatever the route does rarely (it never commits it: the
    connection does, on a clean exit, before the response is sent; any exception rolls
    everything back). ``driver_connection(session)`` answers at once with the connection.
    """

    def __init__(self, engine: AsyncEngine, *, slot_held: bool = False) -> None:
        self._engine = engine
        self._slot_held = slot_held  # the caller holds a pool slot for it (pool_slot)

    async def __aenter__(self) -> AsyncSession:
        self._slot = pool_slot(self._engine, held=self._slot_held)
        await self._slot.__aenter__()
        try:
            conn = await self._engine.connect()
        except BaseException:
            await self._slot.__aexit__(None, None, None)
            raise
        try:
            await conn.begin()
            driver = await _begun_driver(conn)
        except BaseException:
            await conn.close()
            await self._slot.__aexit__(None, None, None)
            raise
        self._conn = conn
        self._session = AsyncSession(
            bind=conn,
            join_transaction_mode="rollback_only",
            expire_on_commit=False,
            autoflush=False,
        )
        self._session.info[_DRIVER_KEY] = (_ANY_TRANSACTION, driver)
        return self._session

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                if self._session.sync_session.in_transaction():
                    await self._session.flush()
                await self._session.close()
                await self._conn.commit()
            else:
                await self._session.close()
                await self._conn.rollback()
        finally:
            try:
                await self._conn.close()
            finally:
                await self._slot.__aexit__(None, None, None)
