"""Requests for one key that arrive while one of them is being handled are handled together.

The first request for a key is handled alone, at once, by the request itself. Requests
for the same key that arrive meanwhile queue; when the first is done, a task takes the
queue in batches (``run_batch``: one database transaction for a whole batch, say, instead
of one each) until it is empty. Under a burst for one key the cost of a transaction
(connection, ``BEGIN``, ``COMMIT`` and its WAL flush) is paid once per batch; without one,
nothing changes: no task, no queue.

A request whose caller goes away (cancelled) while it is queued is left out of its batch;
one that was already in a batch may still be done, as it would be if the caller had gone
away mid-request. A failed batch fails only its own requests (``run_batch`` says what each
got); the queue goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class KeyedBatches(Generic[K, T, R]):
    def __init__(
        self,
        run_one: Callable[[T], Awaitable[R]],
        run_batch: Callable[[list[T]], Awaitable[list[R | BaseException]]],
        *,
        max_batch: int = 32,
    ) -> None:
        self._run_one = run_one
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.batching = True  # False: every request on its own, as if nothing queued
        self._queues: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: T) -> R:
        if not self.batching:
            return await self._run_one(item)
        queue = self._queues.get(key)
        if queue is not None:  # one is being handled: wait for a batch
            future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            queue.append((item, future))
            return await future
        queue = self._queues[key] = []
        try:
            return await self._run_one(item)
        finally:
            if queue:
                task = asyncio.create_task(self._drain(key, queue))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                del self._queues[key]

    async def _drain(self, key: K, queue: list[tuple[T, asyncio.Future[R]]]) -> None:
        live: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while queue:
                taken = queue[: self.max_batch]
                del queue[: self.max_batch]
                live = [(item, future) for item, future in taken if not future.done()]
                if not live:
                    continue
                try:
                    if len(live) == 1:
                        outcomes: list[R | BaseException] = [await self._run_one(live[0][0])]
                    else:
                        outcomes = await self._run_batch([item for item, _ in live])
                except Exception as error:  # the batch as a whole failed
                    outcomes = [error] * len(live)
                for (_, future), outcome in zip(live, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            del self._queues[key]
            for _, future in [*live, *queue]:  # only if this task was cancelled (shutdown)
                if not future.done():
                    future.cancel()

    def __len__(self) -> int:
        return len(self._queues)
