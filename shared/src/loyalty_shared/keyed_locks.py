"""One asyncio lock per key (a member id), made on demand and dropped once nobody needs it."""

from __future__ import annotations

import asyncio
from collections import deque


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
        # a key is here while someone holds it; its waiters (oldest first), if any
        self._held: dict[str, deque[asyncio.Future[None]] | None] = {}

    def hold(self, key: str) -> _Hold:
        """``async with locks.hold(key):`` (a plain object, not a generator: this is on
        every checkout's path, and an uncontended key costs a dict insert and a delete)."""
        return _Hold(self, key)

    async def _acquire(self, key: str) -> None:
        if key not in self._held:
            self._held[key] = None
            return
        waiters = self._held[key]
        if waiters is None:
            waiters = self._held[key] = deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release(key)  # the key was handed over as we gave up: pass it on
            elif waiter in waiters:
                waiters.remove(waiter)
            raise

    def _release(self, key: str) -> None:
        waiters = self._held[key]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the key changes hands
                return
        del self._held[key]

    def __len__(self) -> int:
        return len(self._held)


class _Hold:
    __slots__ = ("_key", "_locks")

    def __init__(self, locks: KeyedLocks, key: str) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        await self._locks._acquire(self._key)

    async def __aexit__(self, *exc: object) -> None:
        self._locks._release(self._key)
