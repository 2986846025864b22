"""FairGate / pool_slot: requests take pooled connections in arrival order, never by racing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import APIRouter, Request
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from loyalty_shared.app import create_service_app
from loyalty_shared.db import FairGate, HotTransaction, Session, create_engine
from loyalty_shared.settings import CommonSettings
from loyalty_shared.testing import Infra, asgi_client, running_app, settings_overrides


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_freed_slot_goes_to_the_longest_waiter_not_to_a_newcomer() -> None:
    gate = FairGate(1, timeout_s=5)
    order: list[str] = []

    async def take(name: str) -> None:
        await gate.acquire()
        order.append(name)
        await asyncio.sleep(0)
        gate.release()

    await gate.acquire()  # the slot is busy
    first = asyncio.create_task(take("first"))
    second = asyncio.create_task(take("second"))
    await _settle()
    assert gate.waiting == 2
    gate.release()
    # a request arriving right as the slot is freed, before the waiter has run: it queues
    newcomer = asyncio.create_task(take("newcomer"))
    await asyncio.gather(first, second, newcomer)
    assert order == ["first", "second", "newcomer"]
    assert gate.waiting == 0
    # all slots are free again: one acquire succeeds at once, a second one would wait
    await asyncio.wait_for(gate.acquire(), 1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(gate.acquire(), 0.05)


async def test_waiting_too_long_is_the_pool_timeout_and_leaves_the_gate_usable() -> None:
    gate = FairGate(1, timeout_s=0.05)
    await gate.acquire()
    with pytest.raises(sa_exc.TimeoutError, match="no database connection came free"):
        await gate.acquire()
    assert gate.waiting == 0
    gate.release()
    await asyncio.wait_for(gate.acquire(), 1)  # the slot was not lost


async def test_a_cancelled_waiter_does_not_keep_the_slot_it_was_handed() -> None:
    gate = FairGate(1, timeout_s=5)
    await gate.acquire()
    cancelled = asyncio.create_task(gate.acquire())
    after: asyncio.Task[None] = asyncio.create_task(gate.acquire())
    await _settle()
    gate.release()  # handed to `cancelled` ...
    cancelled.cancel()  # ... which is cancelled before it runs: the slot passes on
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.wait_for(after, 1)
    assert gate.waiting == 0


async def test_more_requests_than_connections_take_turns_in_arrival_order(infra: Infra) -> None:
    url = await infra.create_database("pool_gate")
    settings = CommonSettings(
        **{**settings_overrides(infra, url), "db_pool_size": 1, "db_max_overflow": 0}
    )
    engine = create_engine(settings)
    started: list[int] = []
    try:

        async def request(n: int) -> Any:
            async with HotTransaction(engine) as session:
                started.append(n)
                return (await session.execute(text("SELECT count(*) FROM pg_sleep(0.01)"))).scalar()

        tasks = []
        for n in range(12):
            tasks.append(asyncio.create_task(request(n)))
            await asyncio.sleep(0)  # arrival order 0, 1, 2, ...
        # one connection: each request runs alone, in the order the gate admits them
        assert await asyncio.gather(*tasks) == [1] * 12
        assert started == list(range(12))
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert engine.pool.size() == 1  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_a_request_that_cannot_get_a_connection_in_time_is_a_503(infra: Infra) -> None:
    url = await infra.create_database("pool_gate_503")
    release = asyncio.Event()
    router = APIRouter()

    @router.get("/hold")
    async def hold(request: Request) -> dict[str, int]:
        async with HotTransaction(request.app.state.engine):
            await release.wait()
        return {"held": 1}

    @router.get("/through-the-session")
    async def through_session(session: Session) -> dict[str, int]:
        return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}

    settings = CommonSettings(
        **{
            **settings_overrides(infra, url),
            "service_name": "demo",
            "db_pool_size": 1,
            "db_max_overflow": 0,
            "db_pool_timeout_seconds": 0.2,
        }
    )
    service = create_service_app(settings, title="demo", description="demo", routers=[router])
    async with running_app(service) as app, asgi_client(app) as client:
        holder = asyncio.create_task(client.get("/hold"))
        while not app.state.engine.pool.checkedout():
            await asyncio.sleep(0.01)
        response = await client.get("/through-the-session")
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.json()["type"].endswith("/database-unavailable")
        release.set()
        assert (await holder).status_code == 200
        assert (await client.get("/through-the-session")).json() == {"one": 1}
