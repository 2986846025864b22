"""The connection pool's hot-path layer: ``DriverAutocommit``.

``DriverAutocommit`` runs a one-statement write on a pooled asyncpg connection with no
``BEGIN``/``COMMIT``, and gives the connection back without a greenlet when that does no
I/O. (Two more layers were here: a shelf of idle connections kept for ``DriverAutocommit``
and a pool subclass whose idle connections it checked out without a greenlet. Measured
without each, the checkout kept 0.82-1.01 and 0.86-1.03 of its throughput, under the 5% a
layer must buy at the median, and in-process the CPU per checkout was the same: both went,
issue #17.) What it buys is measured by bench/orders.py (``HOTPATH_OFF``) and written
down in ``loyalty_shared.hotpath``; the private SQLAlchemy attributes it uses are pinned
by shared/tests/test_private_attributes.py.
"""

from __future__ import annotations

from typing import Any, cast

import asyncpg
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util.concurrency import greenlet_spawn

from loyalty_shared.db import pool_slot
from loyalty_shared.failures import chain

# What a connection that may be broken or mid-operation raises. asyncpg's
# InternalClientError ("cannot switch to state ...; another operation is in progress") is
# what a connection whose server went away mid-statement answers from then on: kept, it
# failed every checkout that took it until the process restarted.
_BROKEN = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
)


class DriverAutocommit:
    """A pooled connection's asyncpg connection outside any transaction.

    Each statement run on it is its own transaction: Postgres commits it when it ends, in
    the same round trip, with no ``BEGIN`` or ``COMMIT`` sent. For a write that is one
    statement (the order path's optimistic attempt: ``points.checkout.record``), that is
    two round trips fewer than ``HotTransaction``. The connection goes back to the pool
    on exit; after an error that may have left it mid-statement it is discarded.
    """

    def __init__(self, engine: AsyncEngine, *, slot_held: bool = False) -> None:
        self._engine = engine
        self._slot_held = slot_held  # the caller holds a pool slot for it (pool_slot)

    async def __aenter__(self) -> asyncpg.Connection:
        self._slot = pool_slot(self._engine, held=self._slot_held)
        await self._slot.__aenter__()
        try:
            self._fairy = await _pool_checkout(self._engine.sync_engine)
        except BaseException:
            await self._slot.__aexit__(None, None, None)
            raise
        adapter: Any = self._fairy.dbapi_connection
        if adapter is None or adapter._transaction is not None:  # pragma: no cover
            await greenlet_spawn(self._fairy.invalidate)
            await greenlet_spawn(self._fairy.close)
            await self._slot.__aexit__(None, None, None)
            raise RuntimeError("a pooled connection was handed out inside a transaction")
        return cast(asyncpg.Connection, self._fairy.driver_connection)

    def _reusable(self, exc: object) -> bool:
        """Keep the connection only if it is certainly idle and sound.

        A domain error (a 404 between statements) or a failed statement (rolled back by
        Postgres, as it was its own transaction) leaves it idle; a cancellation mid-statement
        or a broken connection does not, and it is discarded. So is one left inside a
        transaction (a ``BEGIN`` sent by hand): the pool's reset would not see it.
        """
        if exc is not None and (
            not isinstance(exc, Exception) or any(isinstance(e, _BROKEN) for e in chain(exc))
        ):
            return False
        conn: asyncpg.Connection = self._fairy.driver_connection
        return not conn.is_closed() and not conn.is_in_transaction()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if not self._reusable(exc):
                await _discard(self._fairy)
            else:
                await _pool_checkin(self._fairy)
        finally:
            await self._slot.__aexit__(None, None, None)


# The pool's own checkout and checkin. SQLAlchemy runs pool code in a greenlet
# (``greenlet_spawn``) so that it can await the driver; the checkin of a connection with
# no transaction into a queue with room awaits nothing and is done without one.


async def _pool_checkout(engine: Engine) -> Any:
    """A pooled connection (SQLAlchemy's ``PoolProxiedConnection``), as ``raw_connection()``,
    open: one the server closed while it sat in the pool (the pool does not ping) is given
    back to be replaced, and the next one is taken; after as many as the pool holds, the
    last one taken is returned as it is (its statement fails as on any broken connection)."""
    pool = engine.pool
    for _ in range(pool.size() if isinstance(pool, QueuePool) else 1):
        fairy = await greenlet_spawn(engine.raw_connection)
        conn = fairy.driver_connection
        if conn is not None and not conn.is_closed():
            return fairy
        await _discard(fairy)
    return await greenlet_spawn(engine.raw_connection)


async def _discard(fairy: Any) -> None:
    """Give a connection back to be replaced: the pool opens a new one in its place."""
    await greenlet_spawn(fairy.invalidate)
    await greenlet_spawn(fairy.close)


async def _pool_checkin(fairy: Any) -> None:
    """Give a connection back to its pool (``fairy.close()``)."""
    adapter: Any = fairy.dbapi_connection
    pool = fairy._pool
    if (
        isinstance(pool, QueuePool)
        and pool.checkedin() < pool.size()
        and adapter is not None
        and adapter._transaction is None
    ):
        # nothing to roll back and room in the queue: the pool puts it back without awaiting
        fairy.close()
    else:
        await greenlet_spawn(fairy.close)
