"""Several replicas behind the gateway: balancing, a replica down, health checks, settings."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.applications import Starlette

from gateway.testing import TEST_KEYS, bearer, echo_app, gateway_over, make_gateway_settings
from loyalty_shared.testing import RoutingTransport, eventually, running_app
from points.main import create_app as create_points
from points.settings import PointsSettings


def _two_points(points: list[Starlette] | None = None) -> RoutingTransport:
    echo = echo_app()
    return RoutingTransport(
        {
            "points": points or [echo_app(), echo_app()],
            "segmentation": echo,
            "feedback": echo,
            "webhooks": echo,
        }  # type: ignore[dict-item]
    )


def _replicas(transport: RoutingTransport, **overrides: object) -> dict[str, object]:
    # no health checks unless a test asks: what a test sees comes from its own calls
    return {
        "points_url": transport.urls("points"),
        "upstream_health_interval_seconds": 0,
        **overrides,
    }


async def _metrics(client: httpx.AsyncClient) -> str:
    return (await client.get("/metrics", headers=bearer(TEST_KEYS["admin"]))).text


async def test_calls_are_spread_over_the_replicas() -> None:
    transport = _two_points()
    async with gateway_over(transport, **_replicas(transport)) as client:
        for _ in range(20):
            assert (await client.get("/v1/members/m-1")).status_code == 200
        # concurrent calls: the one with fewer in flight takes the next
        answers = await asyncio.gather(*(client.get("/v1/members/m-2") for _ in range(20)))
    assert all(a.status_code == 200 for a in answers)
    assert transport.calls["points-1"] == transport.calls["points-2"] == 20


async def test_a_replica_down_is_taken_out_and_every_call_still_answered() -> None:
    transport = _two_points()
    transport.down.add("points-2")
    async with gateway_over(transport, **_replicas(transport)) as client:
        # writes without an Idempotency-Key too: a refused connection sent nothing
        for i in range(10):
            answer = await client.post("/v1/orders", json={"order_id": f"o-{i}"})
            assert answer.status_code == 200, answer.text
            assert (await client.get(f"/v1/members/m-{i}")).status_code == 200
        text = await _metrics(client)
    assert transport.calls["points-2"] == 1  # refused once, then out of the rotation
    assert transport.calls["points-1"] == 20
    assert 'gateway_upstream_replica_up{replica="http://points-2",service="points"} 0.0' in text
    assert 'gateway_upstream_ejections_total{reason="refused",service="points"} 1.0' in text
    assert 'gateway_upstream_failovers_total{service="points"} 1.0' in text
    assert 'gateway_upstream_errors_total{kind="unavailable",service="points"}' not in text


async def test_a_taken_out_replica_comes_back_after_the_eject_time() -> None:
    transport = _two_points()
    transport.down.add("points-2")
    settings = _replicas(transport, upstream_eject_seconds=0.05)
    async with gateway_over(transport, **settings) as client:
        assert (await client.get("/v1/members/m-1")).status_code == 200
        assert (await client.get("/v1/members/m-1")).status_code == 200
        transport.down.clear()
        await asyncio.sleep(0.1)  # the eject time passes (no assert on time)
        before = transport.calls["points-2"]
        for _ in range(4):
            assert (await client.get("/v1/members/m-1")).status_code == 200
    assert transport.calls["points-2"] - before == 2


async def test_health_checks_take_a_replica_out_before_any_call_fails_and_bring_it_back() -> None:
    transport = _two_points()
    settings = _replicas(
        transport, upstream_health_interval_seconds=0.05, upstream_health_path="/ready"
    )
    async with gateway_over(transport, **settings) as client:
        transport.down.add("points-2")
        await eventually(
            lambda: _is_out(client, "points-2"), timeout=10
        )  # found by the checks alone: no call was sent
        for _ in range(6):
            assert (await client.get("/v1/members/m-1")).status_code == 200
        # only the health checks went to points-2, never a call
        assert transport.paths["points-2", "/v1/members/m-1"] == 0
        assert transport.paths["points-1", "/v1/members/m-1"] == 6
        transport.down.clear()
        await eventually(lambda: _is_in(client, "points-2"), timeout=10)
        before = transport.calls["points-1"], transport.calls["points-2"]
        for _ in range(6):
            assert (await client.get("/v1/members/m-1")).status_code == 200
    assert transport.calls["points-1"] > before[0]
    assert transport.calls["points-2"] > before[1]


def _replica_gauge(text: str, host: str) -> str:
    line = f'gateway_upstream_replica_up{{replica="http://{host}",service="points"}}'
    return next(row.split()[-1] for row in text.splitlines() if row.startswith(line))


async def _is_out(client: httpx.AsyncClient, host: str) -> bool:
    return _replica_gauge(await _metrics(client), host) == "0.0"


async def _is_in(client: httpx.AsyncClient, host: str) -> bool:
    return _replica_gauge(await _metrics(client), host) == "1.0"


async def test_all_replicas_down_is_503_and_opens_the_breaker_as_one_service() -> None:
    transport = _two_points()
    transport.down.update({"points-1", "points-2"})
    settings = _replicas(transport, breaker_failure_threshold=2)
    async with gateway_over(transport, **settings) as client:
        first = await client.post("/v1/orders", json={})
        assert first.status_code == 503
        assert first.json()["type"].endswith("/upstream-unavailable")
        assert transport.calls["points-1"] + transport.calls["points-2"] == 2  # each once
        assert (await client.post("/v1/orders", json={})).status_code == 503
        opened = await client.post("/v1/orders", json={})
        assert opened.json()["type"].endswith("/circuit-open")
        # the gateway's /ready names the service not ready, with every replica tried
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["points"]["detail"].startswith("unreachable")


async def test_one_replica_down_keeps_the_service_ready() -> None:
    transport = _two_points()
    transport.down.add("points-1")
    async with gateway_over(transport, **_replicas(transport)) as client:
        ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["points"]["ok"] is True


# -- two real points replicas on one database -------------------------------------------
@pytest.fixture
async def second_points(points_settings: PointsSettings) -> AsyncIterator[FastAPI]:
    async with running_app(create_points(points_settings)) as app:
        yield app


async def test_two_points_replicas_one_stopped_mid_way_lose_no_write(
    points_app: FastAPI,
    second_points: FastAPI,
    segmentation_app: FastAPI,
    feedback_app: FastAPI,
    webhooks_app: FastAPI,
) -> None:
    transport = RoutingTransport(
        {
            "points": [points_app, second_points],
            "segmentation": segmentation_app,
            "feedback": feedback_app,
            "webhooks": webhooks_app,
        }
    )
    member = f"m-{uuid.uuid4().hex[:10]}"
    async with gateway_over(transport, **_replicas(transport)) as client:
        assert (await client.post("/v1/members", json={"member_id": member})).status_code == 201
        orders = [f"o-{uuid.uuid4().hex[:10]}" for _ in range(12)]
        for i, order in enumerate(orders):
            if i == 6:
                transport.down.add("points-2")  # the replica stops between two orders
            answer = await client.post(
                "/v1/orders",
                json={
                    "order_id": order,
                    "member_id": member,
                    "amount": "10.00",
                    "occurred_at": datetime.now(UTC).isoformat(),
                },
            )
            assert answer.status_code == 201, answer.text
        account = (await client.get(f"/v1/members/{member}")).json()
        ledger = (await client.get(f"/v1/members/{member}/ledger?limit=100")).json()["items"]
    assert transport.calls["points-1"] > 0 and transport.calls["points-2"] > 0
    # every order credited exactly once, whichever replica took it
    credited = [e["source_id"] for e in ledger if e["source_type"] == "order"]
    assert sorted(credited) == sorted(orders)
    balance = account["balance"]
    assert balance["available"] + balance["pending"] == sum(
        e["points"] + e["pending_change"] for e in ledger
    )


# -- settings ----------------------------------------------------------------------------
def test_a_service_url_may_list_its_replicas() -> None:
    settings = make_gateway_settings(points_url="http://a:8001, http://b:8001/ ")
    assert settings.upstream_replicas()["points"] == ("http://a:8001", "http://b:8001")
    assert settings.upstreams()["points"] == "http://a:8001"
    assert settings.upstream_replicas()["segmentation"] == ("http://segmentation",)


@pytest.mark.parametrize(
    "value", ["", " , ", "points:8001", "ftp://a", "http://a,http://a", "http://a,b:1"]
)
def test_a_bad_service_url_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="points_url"):
        make_gateway_settings(points_url=value)
