"""pytest fixtures for the feedback service (registered by the suite's root conftest)."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from feedback.main import create_app
from feedback.settings import FeedbackSettings
from loyalty_shared.db import create_sessionmaker
from loyalty_shared.testing import (
    Infra,
    asgi_client,
    migrated_database,
    running_app,
    settings_overrides,
)

SERVICE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
async def feedback_db(infra: Infra) -> str:
    return await migrated_database(infra, "feedback", SERVICE_DIR)


@pytest.fixture(scope="session")
def feedback_settings(infra: Infra, feedback_db: str) -> FeedbackSettings:
    return FeedbackSettings(**settings_overrides(infra, feedback_db))


@pytest.fixture(scope="session")
async def feedback_app(feedback_settings: FeedbackSettings) -> AsyncIterator:  # type: ignore[type-arg]
    async with running_app(create_app(feedback_settings)) as app:
        yield app


@pytest.fixture
async def feedback_client(feedback_app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with asgi_client(feedback_app) as client:
        yield client


class FakeClock:
    """A clock the test moves by hand: ``clock.set(...)``, ``clock.advance(minutes=5)``."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class IsolatedFeedback:
    """A feedback app on its own fresh database, driven by a FakeClock."""

    client: httpx.AsyncClient
    clock: FakeClock
    settings: FeedbackSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    async def outbox(self, event_type: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT payload FROM outbox"
        params: dict[str, Any] = {}
        if event_type:
            query += " WHERE event_type = :t"
            params["t"] = event_type
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text(query + " ORDER BY id"), params)).scalars().all()
        return list(rows)


@pytest.fixture(scope="module")
async def isolated_feedback(infra: Infra) -> AsyncIterator[IsolatedFeedback]:
    url = await migrated_database(infra, "feedback", SERVICE_DIR)
    settings = FeedbackSettings(**settings_overrides(infra, url))
    clock = FakeClock()
    engine = create_async_engine(settings.sqlalchemy_url())
    async with running_app(create_app(settings, clock=clock)) as app, asgi_client(app) as client:
        yield IsolatedFeedback(client, clock, settings, engine, create_sessionmaker(engine))
    await engine.dispose()
