"""One asyncio lock per key (a member id), made on demand and dropped once nobody needs it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLocks:
    """Requests for the same key take turns in this process, in arrival order.

    The database's row lock is what makes concurrent writes of one member correct; this
    only keeps a burst for one member from queueing *inside* Postgres. There, every
    waiting request holds a pooled connection (a burst of 16 checkouts for one member
    would hold the whole pool, and every other member's checkout would wait behind it)
    and a snapshot that no longer shows what it waited for, so it has to read its facts
    again once it has the lock. Queued here, it holds neither.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
