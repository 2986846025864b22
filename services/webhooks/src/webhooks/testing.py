"""pytest fixtures for the webhooks service (registered by the suite's root conftest)."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from loyalty_shared.contracts import EventPayload
from loyalty_shared.db import create_sessionmaker
from loyalty_shared.kafka import ensure_topics, make_producer
from loyalty_shared.testing import (
    Infra,
    asgi_client,
    background,
    migrated_database,
    running_app,
    settings_overrides,
    start_group_at_end,
)
from loyalty_shared.topics import ALL_EVENT_TOPICS
from webhooks.deliveries.handlers import WebhookConsumer
from webhooks.deliveries.sender import Sender
from webhooks.main import create_app
from webhooks.settings import WebhooksSettings

SERVICE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
async def webhooks_db(infra: Infra) -> str:
    return await migrated_database(infra, "webhooks", SERVICE_DIR)


@pytest.fixture(scope="session")
def webhooks_settings(infra: Infra, webhooks_db: str) -> WebhooksSettings:
    return WebhooksSettings(**settings_overrides(infra, webhooks_db))


@pytest.fixture(scope="session")
async def webhooks_app(webhooks_settings: WebhooksSettings) -> AsyncIterator[FastAPI]:
    async with running_app(create_app(webhooks_settings)) as app:
        yield app


@pytest.fixture
async def webhooks_client(webhooks_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(webhooks_app) as client:
        yield client


# -- a webhooks stack of its own: a fresh database, the API, the consumer and the sender ------

FAST: dict[str, Any] = {
    "poll_seconds": 0.05,
    "retry_base_seconds": 0.05,
    "retry_max_delay_seconds": 0.2,
    "retry_jitter": 0.2,
    "connect_timeout_seconds": 2.0,
    "timeout_seconds": 5.0,
    "lease_grace_seconds": 1.0,
    "housekeeping_seconds": 0.2,
}


@dataclass
class IsolatedWebhooks:
    """The webhooks API on its own database (``client``, called as the gateway), a producer
    (``send``), its consumer (a group of its own, from the topics' ends, for the module) and
    ``working()``: the sender for the block, with ``settings`` (``FAST`` unless changed)."""

    settings: WebhooksSettings
    client: httpx.AsyncClient
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    producer: Any

    async def send(self, model: type[EventPayload], member_id: str, **data: Any) -> str:
        """An event of ``model`` (its example with ``data``) about ``member_id``, on its topic."""
        event = model.sample(member_id=member_id, **data).event(member_id)
        await self.producer.send_and_wait(
            model.TOPIC, event.to_json_bytes(), key=member_id.encode()
        )
        return event.id

    async def subscribe(self, url: str, *types: str) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/webhooks", json={"url": url, "event_types": list(types)}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def deliveries(self, subscription_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/v1/webhooks/{subscription_id}/deliveries", params={"limit": 200}
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def delivery(self, subscription_id: str, delivery_id: int) -> dict[str, Any]:
        response = await self.client.get(f"/v1/webhooks/{subscription_id}/deliveries/{delivery_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    consumer: WebhookConsumer

    @asynccontextmanager
    async def working(self, **overrides: Any) -> AsyncIterator[WebhooksSettings]:
        """The sender (``settings`` with ``overrides``) for the block; it wakes when the
        module's consumer has written deliveries. The block's subscriptions are deleted at
        its end (their receivers are gone: the next test starts with none)."""
        settings = self.settings.model_copy(update=overrides)
        wake = asyncio.Event()
        self.consumer.wake = wake
        self.consumer.window = settings.retry_window_seconds  # the deliveries it makes
        try:
            async with background(Sender(settings, self.sessionmaker, wake=wake).run):
                yield settings
        finally:
            self.consumer.window = self.settings.retry_window_seconds
            async with self.sessionmaker() as session, session.begin():
                await session.execute(text("DELETE FROM webhook_subscriptions"))


@pytest.fixture(scope="module")
async def isolated_webhooks(infra: Infra) -> AsyncIterator[IsolatedWebhooks]:
    url = await migrated_database(infra, "webhooks", SERVICE_DIR)
    settings = WebhooksSettings(**{**settings_overrides(infra, url), **FAST})
    await ensure_topics(settings, list(ALL_EVENT_TOPICS))
    engine = create_async_engine(settings.sqlalchemy_url())
    producer = make_producer(settings, client_id="webhooks-test-producer")
    await producer.start()
    sessionmaker = create_sessionmaker(engine)
    group = f"webhooks-test-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(settings, group, ALL_EVENT_TOPICS)
    consumer = WebhookConsumer(settings, sessionmaker, group_id=group)
    try:
        async with (
            running_app(create_app(settings)) as app,
            asgi_client(app) as client,
            background(consumer.run),
        ):
            yield IsolatedWebhooks(settings, client, engine, sessionmaker, producer, consumer)
    finally:
        await producer.stop()
        await engine.dispose()
