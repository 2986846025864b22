"""pytest fixtures for the feedback service (registered by the suite's root conftest)."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from loyalty_shared.testing import Infra, asgi_client, migrated_database, running_app, settings_overrides
from feedback.main import create_app
from feedback.settings import FeedbackSettings

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
