"""Which replica runs a periodic job: one Postgres advisory lock per (service, job).

Every replica's worker loops over the same jobs (expiry, tier evaluation, SLA breaches,
the daily recompute, ...). Before a step, ``Leases.hold(job)`` tries the job's advisory
lock (``pg_try_advisory_lock``) on a connection of its own and keeps that connection,
and so the lock, for as long as the process lives: while it does, every other replica's
try fails and it skips the step. When the holder dies (a crash, ``kill -9``, a lost
network), Postgres closes its session and frees the lock; the next replica to try takes
the job over at its next turn. The relay's leadership (``loyalty_shared.outbox``) works
the same way on its LISTEN connection.

A session-level lock survives COMMIT and ROLLBACK, so a connection that holds one is never
handed back to the pool (a pool's reset would not release it, and the next user of the
connection would hold the job without knowing): it is closed instead.
"""

from __future__ import annotations

import os
import socket

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loyalty_shared.failures import describe

log = structlog.get_logger("loyalty.leases")

_TRY = text("SELECT pg_try_advisory_lock(hashtext(:key))")


def holder_name() -> str:
    """Who holds a lease, for the logs: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leases:
    def __init__(self, engine: AsyncEngine, service: str) -> None:
        self.engine = engine
        self.service = service
        self._held: dict[str, AsyncConnection] = {}

    def key(self, job: str) -> str:
        return f"loyalty-job:{self.service}:{job}"

    async def hold(self, job: str) -> bool:
        """True if this process runs ``job`` now (it holds, or just took, the job's lock)."""
        conn = self._held.get(job)
        if conn is not None:
            if await self._alive(conn):
                return True
            await self._drop(job)
            log.warning("job_lease_lost", job=job, holder=holder_name())
        conn = await self.engine.connect()
        try:
            got = bool(await conn.scalar(_TRY, {"key": self.key(job)}))
            await conn.commit()  # idle, not idle in transaction: the lock is the session's
        except BaseException:
            await conn.invalidate()
            await conn.close()
            raise
        if not got:
            await conn.close()  # no lock taken: the connection may go back to the pool
            return False
        self._held[job] = conn
        log.info("job_lease_taken", job=job, holder=holder_name())
        return True

    async def _alive(self, conn: AsyncConnection) -> bool:
        try:
            await conn.execute(text("SELECT 1"))
            await conn.commit()
        except Exception as exc:  # the session (and with it the lock) is gone
            log.debug("job_lease_connection_lost", error=describe(exc, 200))
            return False
        return True

    async def _drop(self, job: str) -> None:
        conn = self._held.pop(job)
        try:
            await conn.invalidate()  # never back to the pool
            await conn.close()
        except Exception as exc:
            log.debug("job_lease_close_failed", error=describe(exc, 200))

    async def release_all(self) -> None:
        """Give every held job up (at shutdown): another replica takes it at once."""
        for job in list(self._held):
            conn = self._held[job]
            try:
                await conn.execute(
                    text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": self.key(job)}
                )
                await conn.commit()
            except Exception as exc:
                log.debug("job_lease_release_failed", job=job, error=describe(exc, 200))
            await self._drop(job)
