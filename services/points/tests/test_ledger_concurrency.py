"""Concurrency on real Postgres: duplicates credit once, no overspending, stock never oversold."""

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from points.settings import PointsSettings
from points.testing import replica


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
async def engine(points_db: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(points_db)
    yield eng
    await eng.dispose()


async def enrol_with(client: httpx.AsyncClient, amount: str) -> str:
    member = uid("m")
    assert (await client.post("/v1/members", json={"member_id": member})).status_code == 201
    placed = await client.post(
        "/v1/orders",
        json={
            "order_id": uid("o"),
            "member_id": member,
            "amount": amount,
            "occurred_at": datetime.now(UTC).isoformat(),
        },
    )
    assert placed.status_code == 201
    return member


async def ledger_state(engine: AsyncEngine, member: str) -> dict[str, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT b.available, b.pending,"
                    " (SELECT coalesce(sum(points), 0) FROM ledger_entries WHERE member_id = :m)"
                    "   AS entries,"
                    " (SELECT coalesce(sum(remaining), 0) FROM lots WHERE member_id = :m) AS lots,"
                    " (SELECT count(*) FROM lots WHERE member_id = :m) AS lot_count"
                    " FROM balances b WHERE b.member_id = :m"
                ),
                {"m": member},
            )
        ).one()
    return dict(row._mapping)


async def test_100_concurrent_posts_of_one_order_credit_once(
    points_client: httpx.AsyncClient, engine: AsyncEngine, points_settings: PointsSettings
) -> None:
    member = uid("m")
    await points_client.post("/v1/members", json={"member_id": member})
    payload = {
        "order_id": uid("o"),
        "member_id": member,
        "amount": "256.00",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    # an instance without the in-process queue: the posts meet only in Postgres
    async with replica(points_settings, queue_members=False) as unqueued:
        responses = await asyncio.gather(
            *[unqueued.post("/v1/orders", json=payload) for _ in range(100)]
        )
    assert Counter(r.status_code for r in responses) == {201: 100}
    assert len({r.text for r in responses}) == 1  # every retry got the first answer
    state = await ledger_state(engine, member)
    assert state == {"available": 256, "pending": 0, "entries": 256, "lots": 256, "lot_count": 1}


async def test_50_concurrent_redemptions_never_overspend(
    points_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    member = await enrol_with(points_client, "200.00")
    responses = await asyncio.gather(
        *[
            points_client.post(
                f"/v1/members/{member}/redemptions",
                json={"points": 10},
                headers={"Idempotency-Key": uid("k")},
            )
            for _ in range(50)
        ]
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 20, 409: 30}
    assert all(
        r.json()["type"].endswith("/insufficient-points") for r in responses if r.status_code == 409
    )
    state = await ledger_state(engine, member)
    assert state["available"] == 0 and state["entries"] == 0 and state["lots"] == 0


async def test_concurrent_retries_of_one_idempotency_key_spend_once(
    points_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    member = await enrol_with(points_client, "100.00")
    headers = {"Idempotency-Key": uid("k")}
    responses = await asyncio.gather(
        *[
            points_client.post(
                f"/v1/members/{member}/redemptions", json={"points": 30}, headers=headers
            )
            for _ in range(20)
        ]
    )
    assert Counter(r.status_code for r in responses) == {201: 20}
    assert len({r.json()["redemption_id"] for r in responses}) == 1
    assert (await ledger_state(engine, member))["available"] == 70


async def test_reward_stock_is_never_oversold(
    points_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    reward = uid("rw")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO rewards (reward_id, name, kind, points_cost, stock) "
                "VALUES (:r, 'Limited tote', 'product', 10, 5)"
            ),
            {"r": reward},
        )
    members = [await enrol_with(points_client, "50.00") for _ in range(20)]
    responses = await asyncio.gather(
        *[
            points_client.post(
                f"/v1/members/{m}/redemptions",
                json={"reward_id": reward},
                headers={"Idempotency-Key": uid("k")},
            )
            for m in members
        ]
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 5, 409: 15}
    assert all(
        r.json()["type"].endswith("/out-of-stock") for r in responses if r.status_code == 409
    )
    async with engine.connect() as conn:
        stock = (
            await conn.execute(
                text("SELECT stock FROM rewards WHERE reward_id = :r"), {"r": reward}
            )
        ).scalar_one()
        spent = (
            await conn.execute(
                text("SELECT count(*) FROM redemptions WHERE reward_id = :r"), {"r": reward}
            )
        ).scalar_one()
    assert (stock, spent) == (0, 5)


async def test_concurrent_refunds_never_exceed_the_order(
    points_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    member = uid("m")
    await points_client.post("/v1/members", json={"member_id": member})
    order_id = uid("o")
    await points_client.post(
        "/v1/orders",
        json={
            "order_id": order_id,
            "member_id": member,
            "amount": "100.00",
            "occurred_at": datetime.now(UTC).isoformat(),
        },
    )
    responses = await asyncio.gather(
        *[
            points_client.post(
                f"/v1/orders/{order_id}/refunds", json={"refund_id": uid("r"), "amount": "30.00"}
            )
            for _ in range(10)
        ]
    )
    assert Counter(r.status_code for r in responses) == {201: 3, 422: 7}
    state = await ledger_state(engine, member)
    assert state["available"] == 10 and state["entries"] == 10 and state["lots"] == 10
