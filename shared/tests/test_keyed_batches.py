"""KeyedBatches: the first request of a key alone, the ones that queued behind it in batches."""

from __future__ import annotations

import asyncio

import pytest

from loyalty_shared.hotpath.keyed_batches import KeyedBatches


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def one(self, item: int) -> int:
        self.calls.append(("one", [item]))
        await self.gate.wait()
        if item < 0:
            raise ValueError(f"bad item {item}")
        return item * 10

    async def batch(self, items: list[int]) -> list[int | BaseException]:
        self.calls.append(("batch", list(items)))
        await asyncio.sleep(0)
        return [ValueError(f"bad item {i}") if i < 0 else i * 10 for i in items]


async def test_requests_that_queue_behind_one_are_handled_in_batches_in_order() -> None:
    rec = Recorder()
    batches = KeyedBatches(rec.one, rec.batch, max_batch=3)
    rec.gate.clear()
    first = asyncio.create_task(batches.submit("m", 1))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(batches.submit("m", i)) for i in range(2, 7)]
    other = asyncio.create_task(batches.submit("n", 100))  # another key does not wait
    await asyncio.sleep(0)
    assert rec.calls == [("one", [1]), ("one", [100])]
    rec.gate.set()
    assert await first == 10 and await other == 1000
    assert [await q for q in queued] == [20, 30, 40, 50, 60]
    assert rec.calls[2:] == [("batch", [2, 3, 4]), ("batch", [5, 6])]
    assert len(batches) == 0  # nothing is kept once the queue is empty


async def test_each_request_gets_its_own_outcome_and_a_lone_request_is_not_batched() -> None:
    rec = Recorder()
    batches = KeyedBatches(rec.one, rec.batch)
    rec.gate.clear()
    first = asyncio.create_task(batches.submit("m", 1))
    await asyncio.sleep(0)
    bad = asyncio.create_task(batches.submit("m", -2))
    good = asyncio.create_task(batches.submit("m", 3))
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == 10
    with pytest.raises(ValueError, match="bad item -2"):
        await bad
    assert await good == 30
    # alone again: handled by the request itself, its error raised to it
    with pytest.raises(ValueError, match="bad item -5"):
        await batches.submit("m", -5)
    assert rec.calls[-1] == ("one", [-5])


async def test_a_failed_batch_fails_its_requests_and_the_queue_goes_on() -> None:
    rec = Recorder()

    async def broken(items: list[int]) -> list[int | BaseException]:
        rec.calls.append(("batch", list(items)))
        if 2 in items:
            raise RuntimeError("connection lost")
        return [i * 10 for i in items]

    batches = KeyedBatches(rec.one, broken, max_batch=2)
    rec.gate.clear()
    first = asyncio.create_task(batches.submit("m", 1))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(batches.submit("m", i)) for i in (2, 3, 4, 5)]
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == 10
    outcomes = await asyncio.gather(*queued, return_exceptions=True)
    assert [type(o).__name__ for o in outcomes[:2]] == ["RuntimeError", "RuntimeError"]
    assert outcomes[2:] == [40, 50]


async def test_a_caller_that_went_away_is_left_out_of_its_batch() -> None:
    rec = Recorder()
    batches = KeyedBatches(rec.one, rec.batch)
    rec.gate.clear()
    first = asyncio.create_task(batches.submit("m", 1))
    await asyncio.sleep(0)
    gone = asyncio.create_task(batches.submit("m", 2))
    stays = [asyncio.create_task(batches.submit("m", i)) for i in (3, 4)]
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == 10
    assert [await s for s in stays] == [30, 40]
    assert rec.calls[-1] == ("batch", [3, 4])


async def test_the_first_request_cancelled_still_hands_the_queue_on() -> None:
    rec = Recorder()
    batches = KeyedBatches(rec.one, rec.batch)
    rec.gate.clear()
    first = asyncio.create_task(batches.submit("m", 1))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(batches.submit("m", i)) for i in (2, 3)]
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    rec.gate.set()
    assert [await q for q in queued] == [20, 30]


async def test_without_batching_every_request_is_alone() -> None:
    rec = Recorder()
    batches = KeyedBatches(rec.one, rec.batch)
    batches.batching = False
    assert await asyncio.gather(*(batches.submit("m", i) for i in (1, 2, 3))) == [10, 20, 30]
    assert [kind for kind, _ in rec.calls] == ["one", "one", "one"]
