"""pytest fixtures: real Postgres and a real Kafka-protocol broker for the whole suite.

By default the session starts its own embedded Postgres and Tansu broker on a
free port. Set ``TEST_DATABASE_URL`` (a server URL; the suite creates its own
databases there) and ``TEST_KAFKA_BOOTSTRAP`` to run against docker-compose.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from loyalty_shared.devstack.broker import TansuBroker, free_port
from loyalty_shared.devstack.postgres import EmbeddedPostgres
from loyalty_shared.gateway_trust import TOKEN_HEADER
from loyalty_shared.migrations import upgrade_head
from loyalty_shared.settings import DEV_GATEWAY_SECRET, CommonSettings


@dataclass
class Infra:
    """What the suite runs against; ``broker`` is None when an external one is used."""

    server_url: str  # postgresql://... of the server's maintenance database
    kafka_bootstrap: str
    broker: TansuBroker | None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def database_url(self, name: str, driver: str = "postgresql+asyncpg") -> str:
        base, _, query = self.server_url.partition("?")
        base = base.rsplit("/", 1)[0]
        url = f"{base}/{name}" + (f"?{query}" if query else "")
        return url.replace("postgresql://", f"{driver}://", 1)

    async def create_database(self, prefix: str) -> str:
        name = f"t_{prefix}_{self.run_id}_{uuid.uuid4().hex[:6]}"
        conn = await asyncpg.connect(_asyncpg_dsn(self.server_url))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.database_url(name)

    @property
    def can_restart_broker(self) -> bool:
        return self.broker is not None


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    db_url = os.environ.get("TEST_DATABASE_URL")
    kafka = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    postgres: EmbeddedPostgres | None = None
    broker: TansuBroker | None = None
    base = tmp_path_factory.mktemp("infra")
    try:
        if not db_url:
            postgres = EmbeddedPostgres(base / "postgres", fast=True)
            postgres.start()
            postgres.wait_ready()
            db_url = postgres.url()
        if not kafka:
            broker = TansuBroker(free_port(), log_path=base / "tansu.log")
            broker.start()
            kafka = broker.bootstrap
        yield Infra(server_url=db_url, kafka_bootstrap=kafka, broker=broker)
    finally:
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()


async def migrated_database(infra: Infra, prefix: str, service_dir: Path) -> str:
    url = await infra.create_database(prefix)
    await asyncio.to_thread(upgrade_head, service_dir, url)
    return url


def settings_overrides(infra: Infra, database_url: str) -> dict[str, Any]:
    return {
        "environment": "test",
        "database_url": database_url,
        "kafka_bootstrap": infra.kafka_bootstrap,
        "kafka_idempotent_producer": False,
        "log_json": True,
        "outbox_poll_seconds": 0.2,
        "outbox_broker_check_seconds": 1.0,
        "consumer_retry_backoff_seconds": 0.05,
    }


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[FastAPI]:
    """Run the app's lifespan (engine, startup hooks) around the block."""
    async with app.router.lifespan_context(app):
        yield app


def gateway_headers() -> dict[str, str]:
    """What the gateway adds to every call in dev and test: its ``X-Gateway-Token``."""
    return {TOKEN_HEADER: DEV_GATEWAY_SECRET}


def asgi_client(
    app: FastAPI, base_url: str = "http://test", *, as_gateway: bool = True
) -> httpx.AsyncClient:
    """A client of the app in process; it calls as the gateway does (``as_gateway=False``:
    as anyone else on the network, without the gateway's token)."""
    headers = gateway_headers() if as_gateway else None
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=base_url, headers=headers
    )


@asynccontextmanager
async def background(*workers: Callable[[asyncio.Event], Any]) -> AsyncIterator[asyncio.Event]:
    """Run worker coroutines (relays, consumers) as tasks for the duration of the block."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w(stop)) for w in workers]
    try:
        yield stop
    finally:
        stop.set()
        _done, pending = await asyncio.wait(tasks, timeout=15)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def start_group_at_end(settings: CommonSettings, group: str, topics: Sequence[str]) -> None:
    """Commit a new consumer group's offsets at the topics' ends.

    A consumer group made for one test starts from the earliest offset and would fold in
    every event the suite published before it: minutes of work late in a full run.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from loyalty_shared.kafka import connection_options

    probe = AIOKafkaConsumer(
        **connection_options(settings),
        group_id=group,
        enable_auto_commit=False,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    await probe.start()
    try:
        await probe.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(probe.partitions_for_topic(topic) or ())
        ]
        if partitions:
            ends = await probe.end_offsets(partitions)
            probe.assign(partitions)
            await probe.commit(dict(ends))
    finally:
        await probe.stop()


async def eventually(
    check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` (sync or async) until it returns a truthy value or time runs out."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        last = result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)


__all__ = [
    "CommonSettings",
    "Infra",
    "RoutingTransport",
    "asgi_client",
    "background",
    "eventually",
    "gateway_headers",
    "infra",
    "migrated_database",
    "running_app",
    "settings_overrides",
    "start_group_at_end",
]


class RoutingTransport(httpx.AsyncBaseTransport):
    """Sends each request to the in-process app named by its host (``http://points/...``).

    Several replicas of a service: ``{"points": [app_a, app_b]}`` serves the hosts
    ``points-1`` and ``points-2``; ``urls("points")`` lists them as the gateway's
    ``GATEWAY_POINTS_URL`` takes them. A host in ``down`` refuses connections (as a stopped
    replica does); ``calls`` counts the requests each host was sent, refused ones included,
    and ``paths`` the same by (host, path).
    """

    def __init__(self, apps: Mapping[str, FastAPI | Sequence[FastAPI]]) -> None:
        self.transports: dict[str, httpx.ASGITransport] = {}
        self.hosts: dict[str, list[str]] = {}
        for name, app in apps.items():
            group: list[FastAPI] = list(app) if isinstance(app, list | tuple) else [app]  # type: ignore[list-item]
            several = isinstance(app, list | tuple)
            hosts = [f"{name}-{i}" for i in range(1, len(group) + 1)] if several else [name]
            self.hosts[name] = hosts
            for host, one in zip(hosts, group, strict=True):
                self.transports[host] = httpx.ASGITransport(app=one)
        self.down: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.paths: Counter[tuple[str, str]] = Counter()

    def urls(self, name: str) -> str:
        return ",".join(f"http://{host}" for host in self.hosts[name])

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls[host] += 1
        self.paths[host, request.url.path] += 1
        if host in self.down or host not in self.transports:
            raise httpx.ConnectError(f"{host} is down", request=request)
        return await self.transports[host].handle_async_request(request)
