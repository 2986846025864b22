"""Run a unit of work again when Postgres aborted it for a deadlock or a serialization failure.

Two transactions that wait for each other's row locks are a deadlock: after
``deadlock_timeout`` Postgres aborts one of them (SQLSTATE 40P01 ``deadlock_detected``).
At REPEATABLE READ and above a transaction whose reads a concurrent write made stale is
aborted too (40001 ``serialization_failure``). Neither says anything about the work: run
again a moment later it succeeds. Writes over many rows take their locks in one order
(segmentation's: the profiles table first; points': balance rows in member id order; see
docs/segmentation.md and docs/points-rules.md) so that they do not meet other writers
halfway; this is for the waits that order cannot rule out (a writer of several members
that locks them in another order, such as a consumer batch in the order of its events).

``retry_on_deadlock(session, unit)`` runs ``unit()`` inside a savepoint of the session's
transaction (a request's, a job's), so whatever the transaction did before it (an
idempotency key claimed, a job's lock) stays. A unit that loses is rolled back to the
savepoint, which releases every lock it took, so the other transaction goes on; after a
short, growing, jittered pause it runs again from the start. If it keeps losing, the
caller gets ``DatabaseBusy`` (503 ``database-busy``, as ``problems`` answers any transient
database error of a request: nothing was changed, retry), never a 500. ``is_deadlock``
says whether an exception is one of the two (``failures.sqlstate`` reads the code).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.failures import sqlstate
from loyalty_shared.problems import ServiceUnavailable

T = TypeVar("T")

log = structlog.get_logger("loyalty.deadlocks")

DEADLOCK_DETECTED = "40P01"
SERIALIZATION_FAILURE = "40001"
RETRIED_SQLSTATES = frozenset({DEADLOCK_DETECTED, SERIALIZATION_FAILURE})

ATTEMPTS = 8
FIRST_PAUSE_SECONDS = 0.05
MAX_PAUSE_SECONDS = 1.0


class DatabaseBusy(ServiceUnavailable):
    slug = "database-busy"
    title = "Database busy"


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` is Postgres's deadlock or serialization failure (asyncpg's own
    exception, or SQLAlchemy's wrapping of it)."""
    return sqlstate(exc) in RETRIED_SQLSTATES


async def retry_on_deadlock(
    session: AsyncSession,
    unit: Callable[[], Awaitable[T]],
    *,
    attempts: int = ATTEMPTS,
    first_pause_seconds: float = FIRST_PAUSE_SECONDS,
) -> T:
    """``await unit()`` in a savepoint; again (after a pause) if it lost a deadlock."""
    pause = first_pause_seconds
    attempt = 1
    while True:
        try:
            async with session.begin_nested():
                return await unit()
        except Exception as exc:
            if not is_deadlock(exc):
                raise
            log.warning("deadlock_retried", attempt=attempt, error_type=type(exc).__name__)
            if attempt >= attempts:
                raise DatabaseBusy(
                    "The database kept aborting this write for lock conflicts with concurrent "
                    f"writes ({attempts} attempts); nothing was changed. Retry shortly.",
                    attempts=attempts,
                ) from exc
        await asyncio.sleep(random.uniform(pause / 2, pause))
        pause = min(pause * 2, MAX_PAUSE_SECONDS)
        attempt += 1
