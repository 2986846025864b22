"""KeyedLocks: one key's holders take turns in arrival order; other keys do not wait."""

from __future__ import annotations

import asyncio

from loyalty_shared.keyed_locks import KeyedLocks


async def test_one_key_takes_turns_in_arrival_order_and_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    inside = 0
    most_inside = 0
    release = asyncio.Event()

    async def hold(key: str, name: str) -> None:
        nonlocal inside, most_inside
        async with locks.hold(key):
            if key == "member-1":
                inside += 1
                most_inside = max(most_inside, inside)
            order.append(name)
            if name == "first":
                await release.wait()
            await asyncio.sleep(0)
            if key == "member-1":
                inside -= 1

    tasks = [asyncio.create_task(hold("member-1", n)) for n in ("first", "second", "third")]
    await asyncio.sleep(0.01)
    other = asyncio.create_task(hold("member-2", "other member"))
    await asyncio.wait_for(other, 1)  # not held up by member-1's queue
    assert order == ["first", "other member"]
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first", "other member", "second", "third"]
    assert most_inside == 1
    assert len(locks) == 0  # nothing kept once nobody holds or waits


async def test_a_failing_holder_releases_the_key() -> None:
    locks = KeyedLocks()

    async def fail() -> None:
        async with locks.hold("k"):
            raise RuntimeError("boom")

    for _ in range(2):
        try:
            await fail()
        except RuntimeError:
            pass
    async with asyncio.timeout(1), locks.hold("k"):
        assert len(locks) == 1
    assert len(locks) == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_a_key_handed_to_it_passes_on() -> None:
    locks = KeyedLocks()
    got: list[str] = []
    release_first = asyncio.Event()

    async def hold(name: str, wait: asyncio.Event | None = None) -> None:
        async with locks.hold("k"):
            got.append(name)
            if wait is not None:
                await wait.wait()

    first = asyncio.create_task(hold("first", release_first))
    await asyncio.sleep(0)
    second = asyncio.create_task(hold("second"))
    third = asyncio.create_task(hold("third"))
    fourth = asyncio.create_task(hold("fourth"))
    await asyncio.sleep(0.01)
    second.cancel()  # cancelled while it waits: it never holds the key
    await asyncio.sleep(0)
    release_first.set()
    await asyncio.sleep(0)  # first releases: the key is handed to third...
    third.cancel()  # ...which is cancelled before it runs: the key passes on to fourth
    await asyncio.wait_for(asyncio.gather(first, fourth), 1)
    for task in (second, third):
        assert task.cancelled()
    assert got == ["first", "fourth"]
    assert len(locks) == 0


async def test_a_key_handed_to_a_waiter_that_gives_up_with_nobody_behind_it_is_dropped() -> None:
    locks = KeyedLocks()
    release_first = asyncio.Event()

    async def hold(wait: asyncio.Event | None = None) -> None:
        async with locks.hold("k"):
            if wait is not None:
                await wait.wait()

    first = asyncio.create_task(hold(release_first))
    await asyncio.sleep(0)
    second = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    release_first.set()
    await asyncio.sleep(0)  # first releases: the key is handed to second...
    second.cancel()  # ...which gives up before it runs, with nobody to pass it on to
    await asyncio.wait_for(first, 1)
    await asyncio.gather(second, return_exceptions=True)
    assert second.cancelled()
    assert len(locks) == 0  # not kept for a holder that never came
    async with asyncio.timeout(1), locks.hold("k"):  # and the key is free
        assert len(locks) == 1
