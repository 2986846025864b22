"""Each service's migrations build exactly the schema its models describe (no drift either way)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from loyalty_shared.migrations import alembic_config
from loyalty_shared.testing import Infra, migrated_database

ROOT = Path(__file__).resolve().parents[1]


def _metadata(service: str) -> MetaData:
    if service == "points":
        from points.db import metadata as points_metadata

        return points_metadata
    if service == "segmentation":
        from segmentation.db import metadata as segmentation_metadata

        return segmentation_metadata
    if service == "webhooks":
        from webhooks.db import metadata as webhooks_metadata

        return webhooks_metadata
    from feedback.db import metadata as feedback_metadata

    return feedback_metadata


def _include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # objects made by raw SQL in migrations on purpose (the outbox NOTIFY trigger's state table)
    return not (type_ == "table" and name == "outbox_relay_state")


async def _drift(url: str, service: str) -> list[Any]:
    """What differs between the database's schema and the service's models."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"include_object": _include, "compare_type": True}
                    ),
                    _metadata(service),
                )
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", ["points", "segmentation", "feedback", "webhooks"])
async def test_migrations_match_the_models(infra: Infra, service: str) -> None:
    url = await migrated_database(infra, f"drift_{service}", ROOT / "services" / service)
    diff = await _drift(url, service)
    assert diff == [], f"{service}: migrations and models differ: {diff}"


@pytest.mark.parametrize("service", ["points", "segmentation", "feedback", "webhooks"])
async def test_the_latest_migration_goes_down_and_up_again(infra: Infra, service: str) -> None:
    service_dir = ROOT / "services" / service
    url = await migrated_database(infra, f"down_{service}", service_dir)
    config = alembic_config(service_dir, url)
    await asyncio.to_thread(command.downgrade, config, "-1")
    await asyncio.to_thread(command.upgrade, config, "head")
    diff = await _drift(url, service)
    assert diff == [], f"{service}: down and up again, the schema differs: {diff}"
