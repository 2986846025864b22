"""pytest fixtures for the segmentation service (registered by the suite's root conftest)."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from loyalty_shared.testing import Infra, asgi_client, migrated_database, running_app, settings_overrides
from segmentation.main import create_app
from segmentation.settings import SegmentationSettings

SERVICE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
async def segmentation_db(infra: Infra) -> str:
    return await migrated_database(infra, "segmentation", SERVICE_DIR)


@pytest.fixture(scope="session")
def segmentation_settings(infra: Infra, segmentation_db: str) -> SegmentationSettings:
    return SegmentationSettings(**settings_overrides(infra, segmentation_db))


@pytest.fixture(scope="session")
async def segmentation_app(segmentation_settings: SegmentationSettings) -> AsyncIterator:  # type: ignore[type-arg]
    async with running_app(create_app(segmentation_settings)) as app:
        yield app


@pytest.fixture
async def segmentation_client(segmentation_app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with asgi_client(segmentation_app) as client:
        yield client
