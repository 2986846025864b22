"""A number of slots handed out in arrival order (the pool's gate, a member's turn)."""

from __future__ import annotations

import asyncio
from collections import deque


class FifoSlots:
    """First come, first served slots: a freed slot goes straight to the longest waiter.

    ``asyncio.Semaphore`` and ``asyncio.Queue`` let a caller that arrives just as a slot
    is freed take it, and the waiter that was woken for it queues again; here a caller
    that arrives meanwhile queues behind the waiters. A waiter that gives up (cancelled,
    timed out) as the slot reaches it passes the slot on. Used by ``db.FairGate`` (a
    connection pool's slots) and ``keyed_locks.KeyedLocks`` (one slot per member).
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take_free(self) -> bool:
        """Take a slot if one is free and nobody waits for it (no await)."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Queue for the next freed slot."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived as we gave up: pass it on
            else:
                waiter.cancel()
                if waiter in self._waiters:  # release() may have dropped it already
                    self._waiters.remove(waiter)
            raise

    async def acquire(self) -> None:
        if not self.take_free():
            await self.wait()

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; _free is unchanged
                return
        self._free += 1

    @property
    def free(self) -> int:
        return self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)
