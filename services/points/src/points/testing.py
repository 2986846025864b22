"""pytest fixtures for the points service (registered by the suite's root conftest)."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from loyalty_shared.testing import (
    Infra,
    asgi_client,
    migrated_database,
    running_app,
    settings_overrides,
)
from points.main import create_app
from points.settings import PointsSettings

SERVICE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
async def points_db(infra: Infra) -> str:
    return await migrated_database(infra, "points", SERVICE_DIR)


@pytest.fixture(scope="session")
def points_settings(infra: Infra, points_db: str) -> PointsSettings:
    return PointsSettings(**settings_overrides(infra, points_db))


@pytest.fixture(scope="session")
async def points_app(points_settings: PointsSettings) -> AsyncIterator:  # type: ignore[type-arg]
    async with running_app(create_app(points_settings)) as app:
        yield app


@pytest.fixture
async def points_client(points_app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with asgi_client(points_app) as client:
        yield client
