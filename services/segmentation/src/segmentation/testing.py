"""pytest fixtures for the segmentation service (registered by the suite's root conftest)."""

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


class FreshSegmentation:
    """A segmentation app on its own new database (population-level tests need a clean slate)."""

    def __init__(self, app, client: httpx.AsyncClient, settings: SegmentationSettings) -> None:  # type: ignore[no-untyped-def]
        from segmentation.worker import build_consumer

        self.app = app
        self.client = client
        self.settings = settings
        self.consumer = build_consumer(settings, app.state.sessionmaker)

    async def feed(self, *events) -> None:  # type: ignore[no-untyped-def]
        """Apply events exactly as the consumer does for one polled batch (inbox + handlers)."""
        await self.consumer._apply(list(events))

    async def recompute(self, as_of: str) -> dict:  # type: ignore[type-arg]
        from loyalty_shared.testing import eventually

        accepted = await self.client.post("/v1/analytics/recompute", json={"as_of": as_of})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]

        async def finished() -> dict | None:  # type: ignore[type-arg]
            body = (await self.client.get(f"/v1/jobs/{job_id}")).json()
            return body if body["status"] in {"succeeded", "failed"} else None

        job = await eventually(finished, timeout=60)
        assert job["status"] == "succeeded", job
        return job  # type: ignore[no-any-return]

    async def sql(self, statement: str, **params) -> list:  # type: ignore[no-untyped-def,type-arg]
        from sqlalchemy import text

        async with self.app.state.sessionmaker() as session:
            return list((await session.execute(text(statement), params)).all())


@pytest.fixture
async def fresh_segmentation(infra: Infra) -> AsyncIterator[FreshSegmentation]:
    url = await migrated_database(infra, "segmentation", SERVICE_DIR)
    settings = SegmentationSettings(**settings_overrides(infra, url))
    async with running_app(create_app(settings)) as app, asgi_client(app) as client:
        yield FreshSegmentation(app, client, settings)
