"""pytest fixtures and helpers for the points service (registered by the root conftest)."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

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


# An app on its own database, for tests that change what every order earns (campaigns,
# the ladder): the shared ``points_db`` keeps the default ladder and no campaigns.


@pytest.fixture(scope="session")
async def earning_db(infra: Infra) -> str:
    return await migrated_database(infra, "points_earning", SERVICE_DIR)


@pytest.fixture(scope="session")
def earning_settings(infra: Infra, earning_db: str) -> PointsSettings:
    return PointsSettings(**settings_overrides(infra, earning_db))


@pytest.fixture(scope="session")
async def earning_app(earning_settings: PointsSettings) -> AsyncIterator:  # type: ignore[type-arg]
    async with running_app(create_app(earning_settings)) as app:
        yield app


@pytest.fixture
async def earning_client(earning_app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with asgi_client(earning_app) as client:
        yield client


def mid() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def oid() -> str:
    return f"o-{uuid.uuid4().hex[:12]}"


def order(member_id: str, amount: str, at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "order_id": oid(),
        "member_id": member_id,
        "amount": amount,
        "occurred_at": (at or datetime.now(UTC)).isoformat(),
        **extra,
    }


async def enrol(client: httpx.AsyncClient, member: str | None = None, **extra: Any) -> str:
    member = member or mid()
    response = await client.post("/v1/members", json={"member_id": member, **extra})
    assert response.status_code == 201, response.text
    return member


async def sql(db: str, statement: str, **params: Any) -> list[Any]:
    engine = create_async_engine(db)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def backdate_enrolment(db: str, member: str, days: float) -> None:
    """Make ``member`` enrolled ``days`` ago, as a member enrolled before the test would be:
    the real-time routes refuse a time before the enrolment (docs/security.md)."""
    await sql(
        db,
        "UPDATE members SET enrolled_at = now() - make_interval(secs => :s) WHERE member_id = :m",
        s=days * 86400,
        m=member,
    )


async def import_history(client: httpx.AsyncClient, *orders: dict[str, Any]) -> None:
    """Record past orders the way history is recorded: ``POST /v1/orders/batch`` (the
    real-time ``POST /v1/orders`` takes the last 48 hours only)."""
    response = await client.post("/v1/orders/batch", json={"orders": list(orders)})
    assert response.status_code == 200, response.text
    assert response.json()["created"] == len(orders), response.text


async def outbox_events(db: str, member: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await sql(
        db, "SELECT event_type, payload FROM outbox WHERE key = :m ORDER BY id", m=member
    )
    return [(r.event_type, r.payload) for r in rows]


class _NoQueue:
    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        yield


@asynccontextmanager
async def replica(
    settings: PointsSettings, *, queue_members: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Another instance of the points API on the same database, as a second replica.

    An instance makes the checkouts of one member take turns in-process
    (``Checkout.member_locks``, ``app.state.checkouts``). With ``queue_members=False`` it
    does not, so concurrent
    requests through it meet only in Postgres, as they would from many replicas: what the
    concurrency tests are about.
    """
    app = create_app(settings)
    async with running_app(app), asgi_client(app) as client:
        if not queue_members:
            app.state.checkout.member_locks = _NoQueue()
            app.state.checkouts.batching = False
        yield client
