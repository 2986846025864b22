"""One asyncio lock per key (a member id), made on demand and dropped once nobody needs it."""

from __future__ import annotations

from loyalty_shared.fifo_slots import FifoSlots


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
        # a key is here while someone holds it (its one slot taken), with its waiters
        self._held: dict[str, FifoSlots] = {}

    def hold(self, key: str) -> _Hold:
        """``async with locks.hold(key):`` (a plain object, not a generator: this is on
        every checkout's path, and an uncontended key costs a dict insert and a delete)."""
        return _Hold(self, key)

    async def _acquire(self, key: str) -> None:
        slots = self._held.get(key)
        if slots is None:
            self._held[key] = FifoSlots(0)  # its one slot, taken by this caller
            return
        try:
            await slots.acquire()
        except BaseException:
            self._drop_if_free(key, slots)  # gave up, passing the key on to nobody
            raise

    def _release(self, key: str) -> None:
        slots = self._held[key]
        slots.release()
        self._drop_if_free(key, slots)

    def _drop_if_free(self, key: str, slots: FifoSlots) -> None:
        if slots.free and self._held.get(key) is slots:
            del self._held[key]  # nobody holds it: made again on demand

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
