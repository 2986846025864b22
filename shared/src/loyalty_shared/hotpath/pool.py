"""The connection pool's hot-path layers: ``QuickCheckoutPool`` and ``DriverAutocommit``.

``DriverAutocommit`` runs a one-statement write on a pooled asyncpg connection with no
``BEGIN``/``COMMIT``; ``QuickCheckoutPool`` lets it check idle connections out and in
without a greenlet. (A shelf of idle connections kept for ``DriverAutocommit`` bought
0.82-1.01 of throughput in five measurements, 4% at the median, under the 5% a layer must
buy: it went, issue #17.) What each buys is measured by bench/orders.py
(``HOTPATH_OFF``) and written down in ``loyalty_shared.hotpath``; the private SQLAlchemy
attributes they use are pinned by shared/tests/test_private_attributes.py.
"""

from __future__ import annotations

import time
from typing import Any, cast

import asyncpg
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, QueuePool
from sqlalchemy.util.concurrency import greenlet_spawn, in_greenlet

from loyalty_shared.db import pool_slot
from loyalty_shared.failures import chain


class QuickCheckoutPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's async queue pool whose idle connections ``DriverAutocommit`` can take
    without a greenlet (``_pool_checkout``).

    The pool's checkout of an idle connection does no I/O, except when the connection has
    to be opened again (invalidated, or due for ``pool_recycle``): then, outside a
    greenlet, ``_do_get`` puts it back and raises ``MissingGreenlet``, and the caller asks
    again from a greenlet, as SQLAlchemy's own checkout would.
    """

    def _to_reopen(self, record: Any) -> bool:
        """What the pool's checkout checks (``_ConnectionRecord.get_connection``): invalidated
        (by hand, or older than a disconnect the pool saw) or due for ``pool_recycle``."""
        return bool(record._is_hard_or_soft_invalidated()) or (
            self._recycle > -1 and time.time() - record.starttime > self._recycle
        )

    def _do_get(self) -> ConnectionPoolEntry:
        record: Any = super()._do_get()  # a _ConnectionRecord
        if not in_greenlet() and self._to_reopen(record):
            # a checkout without a greenlet (``_pool_checkout``) got a connection that has to
            # be opened again, which awaits: back into the queue, and the caller asks again
            # from a greenlet (before anything was started that would have to be undone)
            self._pool.put(record, False)
            raise sa_exc.MissingGreenlet("the connection has to be opened again")
        return cast(ConnectionPoolEntry, record)


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


# The pool's own checkout and checkin, without a greenlet when they do no I/O.
# SQLAlchemy runs pool code in a greenlet (``greenlet_spawn``) so that it can await the
# driver; a checkout of an idle connection and the checkin of a connection with no
# transaction await nothing, and the greenlet (two switches, and a new greenlet each
# time) was most of what they cost: ~60 µs of a checkout's ~800 µs of CPU. When I/O is
# needed (no idle connection, a connection to open again), the greenlet is used as before.


async def _pool_checkout(engine: Engine) -> Any:
    """A pooled connection (SQLAlchemy's ``PoolProxiedConnection``), as ``raw_connection()``,
    open: one the server closed while it sat in the pool (the pool does not ping) is given
    back to be replaced, and the next one is taken."""
    while True:
        fairy = await _checkout(engine)
        conn = fairy.driver_connection
        if conn is not None and not conn.is_closed():
            return fairy
        await _discard(fairy)


async def _checkout(engine: Engine) -> Any:
    pool = engine.pool
    if isinstance(pool, QuickCheckoutPool) and pool.checkedin():
        try:
            # an idle connection in the queue is taken without awaiting; no
            # Connection/AsyncConnection objects, no events
            return engine.raw_connection()
        except sa_exc.MissingGreenlet:
            pass  # it has to be opened again (QuickCheckoutPool._do_get put it back): that awaits
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
