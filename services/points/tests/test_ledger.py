"""The ledger through the HTTP API: pending, maturing, refunds and debt, redemptions, cancels,
adjustments, expiry, the ledger history and the member's balance, on real Postgres."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from loyalty_shared.idempotency import prune
from loyalty_shared.testing import asgi_client, background, eventually, running_app
from points.db import idempotency_keys
from points.ledger.jobs import run_ledger_jobs
from points.main import create_app
from points.settings import PointsSettings
from points.testing import import_history
from points.worker import ledger_jobs_worker


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def key() -> dict[str, str]:
    return {"Idempotency-Key": uid("k")}


def ops(operator: str = "op-alice") -> dict[str, str]:
    return {**key(), "X-Operator-Id": operator}


@pytest.fixture(scope="module")
async def windowed_app(points_settings: PointsSettings) -> AsyncIterator[Any]:
    """The same service with a 7-day return window (purchase points pending)."""
    settings = points_settings.model_copy(update={"pending_days": 7})
    async with running_app(create_app(settings)) as app:
        yield app


@pytest.fixture
async def windowed(windowed_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(windowed_app) as client:
        yield client


@pytest.fixture(scope="module")
async def engine(points_db: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(points_db)
    yield eng
    await eng.dispose()


async def enrol(client: httpx.AsyncClient) -> str:
    member = uid("m")
    response = await client.post("/v1/members", json={"member_id": member})
    assert response.status_code == 201, response.text
    return member


async def order(
    client: httpx.AsyncClient, member: str, amount: str, *, at: datetime | None = None
) -> dict[str, Any]:
    """A checkout now (its answer included), or with ``at`` an order of the past, recorded
    as history is (the real-time route takes the last 48 hours only)."""
    payload = {
        "order_id": uid("o"),
        "member_id": member,
        "amount": amount,
        "occurred_at": (at or datetime.now(UTC)).isoformat(),
    }
    if at is not None:
        await import_history(client, payload)
        return payload
    response = await client.post("/v1/orders", json=payload)
    assert response.status_code == 201, response.text
    return {**payload, **response.json()}


async def balance(client: httpx.AsyncClient, member: str) -> dict[str, Any]:
    response = await client.get(f"/v1/members/{member}")
    assert response.status_code == 200, response.text
    return dict(response.json()["balance"])


async def outbox_types(engine: AsyncEngine, member: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT event_type FROM outbox WHERE key = :m ORDER BY id"), {"m": member}
        )
        return [r[0] for r in rows]


async def outbox_payloads(engine: AsyncEngine, member: str, type_: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT payload FROM outbox WHERE key = :m AND event_type = :t ORDER BY id"),
            {"m": member, "t": type_},
        )
        return [r[0]["data"] for r in rows]


async def entry_count(engine: AsyncEngine, member: str) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM ledger_entries WHERE member_id = :m"), {"m": member}
                )
            ).scalar_one()
        )


async def run_jobs(app: Any, now: datetime, *members: str) -> None:
    await run_ledger_jobs(app.state.sessionmaker, app.state.settings, now, member_ids=list(members))


# --- pending points and the maturing job ---------------------------------------------


async def test_pending_points_mature_once_when_the_window_closes(
    windowed: httpx.AsyncClient, windowed_app: Any, engine: AsyncEngine
) -> None:
    member = await enrol(windowed)
    placed = await order(windowed, member, "88.80")
    assert placed["points_earned"] == 88 and placed["points_pending"] == 88
    assert placed["balance"] == {"available": 0, "pending": 88}

    await run_jobs(windowed_app, datetime.now(UTC) + timedelta(days=6), member)
    assert (await balance(windowed, member))["pending"] == 88  # window still open

    later = datetime.now(UTC) + timedelta(days=8)
    await run_jobs(windowed_app, later, member)
    await run_jobs(windowed_app, later, member)  # a second run changes nothing
    now = await balance(windowed, member)
    assert (now["available"], now["pending"]) == (88, 0)
    assert (await outbox_types(engine, member)).count("loyalty.points.matured.v1") == 1
    ledger = (await windowed.get(f"/v1/members/{member}/ledger")).json()["items"]
    assert [e["type"] for e in ledger] == ["mature", "pending"]


async def test_old_order_outside_the_window_is_available_at_once(
    windowed: httpx.AsyncClient,
) -> None:
    member = await enrol(windowed)
    await order(windowed, member, "50.00", at=datetime.now(UTC) - timedelta(days=10))
    now = await balance(windowed, member)
    assert (now["available"], now["pending"]) == (50, 0)


# --- refunds ----------------------------------------------------------------------------


async def test_refund_inside_the_window_takes_back_pending_points(
    windowed: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    member = await enrol(windowed)
    placed = await order(windowed, member, "100.00")
    refund = await windowed.post(
        f"/v1/orders/{placed['order_id']}/refunds", json={"refund_id": uid("r"), "amount": "40.00"}
    )
    assert refund.status_code == 201, refund.text
    body = refund.json()
    assert body["points_reversed"] == 40 and body["reversed_from_pending"] == 40
    assert body["balance"] == {"available": 0, "pending": 60, "debt": 0}
    types = await outbox_types(engine, member)
    assert "loyalty.order.refunded.v1" in types and "loyalty.points.reversed.v1" in types
    refunded = (await outbox_payloads(engine, member, "loyalty.order.refunded.v1"))[0]
    assert refunded["order_id"] == placed["order_id"] and refunded["amount"] == "40.00"
    assert refunded["points_reversed"] == 40


async def test_partial_refunds_are_proportional_exactly_once_and_capped(
    points_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    member = await enrol(points_client)
    placed = await order(points_client, member, "99.99")  # 99 points
    path = f"/v1/orders/{placed['order_id']}/refunds"
    first = {"refund_id": uid("r"), "amount": "33.33"}
    one = await points_client.post(path, json=first)
    assert one.status_code == 201, one.text
    assert one.json()["points_reversed"] == 33  # floor(99 * 33.33 / 99.99)
    again = await points_client.post(path, json=first)
    assert again.json() == one.json()  # replay, credited once
    other_body = await points_client.post(path, json={**first, "amount": "10.00"})
    assert other_body.status_code == 409
    assert other_body.json()["type"].endswith("/idempotency-key-reused")

    rest = await points_client.post(path, json={"refund_id": uid("r"), "amount": "66.66"})
    assert rest.status_code == 201
    assert rest.json()["points_reversed"] == 66  # cumulative: all 99 reversed in total
    assert rest.json()["refunded_total"] == "99.99"
    entries_before = await entry_count(engine, member)
    too_much = await points_client.post(path, json={"refund_id": uid("r"), "amount": "0.01"})
    assert too_much.status_code == 422
    assert too_much.json()["type"].endswith("/refund-exceeds-order")
    assert "body.amount" in [e["field"] for e in too_much.json()["errors"]]
    assert await entry_count(engine, member) == entries_before
    assert (await balance(points_client, member))["available"] == 0


async def test_refund_of_spent_points_becomes_a_debt_repaid_by_later_earnings(
    points_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    member = await enrol(points_client)
    placed = await order(points_client, member, "100.00")
    spent = await points_client.post(
        f"/v1/members/{member}/redemptions", json={"points": 80}, headers=key()
    )
    assert spent.status_code == 201, spent.text
    refund = await points_client.post(
        f"/v1/orders/{placed['order_id']}/refunds",
        json={"refund_id": uid("r"), "amount": "100.00"},
    )
    body = refund.json()
    assert body["points_reversed"] == 100
    assert body["reversed_from_available"] == 20 and body["debt_added"] == 80
    assert body["balance"] == {"available": -80, "pending": 0, "debt": 80}

    refused = await points_client.post(
        f"/v1/members/{member}/redemptions", json={"points": 1}, headers=key()
    )
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/points-in-debt")

    repaid = await order(points_client, member, "50.00")
    assert repaid["balance"]["available"] == -30
    status = await balance(points_client, member)
    assert (status["available"], status["debt"]) == (-30, 30)
    await order(points_client, member, "45.00")
    status = await balance(points_client, member)
    assert (status["available"], status["debt"]) == (15, 0)
    ledger = (await points_client.get(f"/v1/members/{member}/ledger")).json()["items"]
    assert [e["type"] for e in ledger].count("debt_repayment") == 2
    reversal = await outbox_payloads(engine, member, "loyalty.points.reversed.v1")
    assert reversal[0]["debt_added"] == 80


# --- redemptions ------------------------------------------------------------------------


async def test_redemption_spends_the_lot_that_expires_first(
    points_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    member = await enrol(points_client)
    recent = await order(points_client, member, "30.00")
    older = await order(points_client, member, "30.00", at=datetime.now(UTC) - timedelta(days=60))
    spent = await points_client.post(
        f"/v1/members/{member}/redemptions",
        json={"points": 40, "order_id": uid("o")},
        headers=key(),
    )
    assert spent.status_code == 201, spent.text
    body = spent.json()
    assert body["points_spent"] == 40 and body["balance"]["available"] == 20
    async with engine.connect() as conn:
        lots = dict(
            (
                await conn.execute(
                    text("SELECT source_id, remaining FROM lots WHERE member_id = :m"),
                    {"m": member},
                )
            ).all()
        )
    assert lots == {older["order_id"]: 0, recent["order_id"]: 20}
    assert [lot["points"] for lot in body["lots"]] == [30, 10]
    redeemed = await outbox_payloads(engine, member, "loyalty.points.redeemed.v1")
    assert redeemed[0]["points"] == 40 and redeemed[0]["redemption_id"] == body["redemption_id"]


async def test_redemption_replays_with_the_same_key_and_refuses_overspending(
    points_client: httpx.AsyncClient,
) -> None:
    member = await enrol(points_client)
    await order(points_client, member, "50.00")
    headers = key()
    path = f"/v1/members/{member}/redemptions"
    first = await points_client.post(path, json={"points": 30}, headers=headers)
    second = await points_client.post(path, json={"points": 30}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    reused = await points_client.post(path, json={"points": 31}, headers=headers)
    assert reused.status_code == 409
    assert reused.json()["type"].endswith("/idempotency-key-reused")
    short = await points_client.post(path, json={"points": 21}, headers=key())
    assert short.status_code == 409
    assert short.json()["type"].endswith("/insufficient-points")
    assert (await balance(points_client, member))["available"] == 20


async def test_reward_redemption_takes_stock_and_cancel_gives_points_and_stock_back(
    points_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    reward = uid("rw")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO rewards (reward_id, name, kind, points_cost, stock) "
                "VALUES (:r, 'Mug', 'product', 25, 3)"
            ),
            {"r": reward},
        )
    member = await enrol(points_client)
    await order(points_client, member, "100.00")
    spent = await points_client.post(
        f"/v1/members/{member}/redemptions",
        json={"reward_id": reward, "quantity": 2},
        headers=key(),
    )
    assert spent.status_code == 201, spent.text
    assert spent.json()["points_spent"] == 50
    none_left = await points_client.post(
        f"/v1/members/{member}/redemptions",
        json={"reward_id": reward, "quantity": 2},
        headers=key(),
    )
    assert none_left.status_code == 409
    assert none_left.json()["type"].endswith("/out-of-stock")

    rid = spent.json()["redemption_id"]
    cancelled = await points_client.post(f"/v1/redemptions/{rid}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["points_returned"] == 50 and body["returned_to_same_lots"] == 50
    assert body["balance"]["available"] == 100
    again = await points_client.post(f"/v1/redemptions/{rid}/cancel")
    assert again.json() == body  # cancelling twice gives back once
    async with engine.connect() as conn:
        stock = (
            await conn.execute(
                text("SELECT stock FROM rewards WHERE reward_id = :r"), {"r": reward}
            )
        ).scalar_one()
        lots = (
            await conn.execute(
                text("SELECT count(*), sum(remaining) FROM lots WHERE member_id = :m"),
                {"m": member},
            )
        ).one()
    assert stock == 3
    assert tuple(lots) == (1, 100)  # the same lot got its points back


async def test_cancel_after_the_lot_expired_credits_a_new_lot(
    points_client: httpx.AsyncClient, points_app: Any, engine: AsyncEngine
) -> None:
    member = await enrol(points_client)
    # earned almost 12 months ago: the lot expires tomorrow
    await order(points_client, member, "40.00", at=datetime.now(UTC) - timedelta(days=364))
    spent = await points_client.post(
        f"/v1/members/{member}/redemptions", json={"points": 15}, headers=key()
    )
    assert spent.status_code == 201
    await run_jobs(points_app, datetime.now(UTC) + timedelta(days=3), member)
    assert (await balance(points_client, member))["available"] == 0
    expired = await outbox_payloads(engine, member, "loyalty.points.expired.v1")
    assert [e["points"] for e in expired] == [25]

    cancelled = await points_client.post(f"/v1/redemptions/{spent.json()['redemption_id']}/cancel")
    body = cancelled.json()
    assert body["returned_as_new_lots"] == 15 and body["returned_to_same_lots"] == 0
    status = await balance(points_client, member)
    assert status["available"] == 15
    assert status["expiring_soon"][0]["points"] == 15
    expires = datetime.fromisoformat(status["expiring_soon"][0]["expires_at"])
    assert expires > datetime.now(UTC) + timedelta(days=360)  # a fresh 12 months


# --- expiry and the member's balance ----------------------------------------------------


async def test_expiry_job_expires_each_lot_once_and_status_shows_what_expires_next(
    points_client: httpx.AsyncClient, points_app: Any, engine: AsyncEngine
) -> None:
    member = await enrol(points_client)
    await order(points_client, member, "10.00", at=datetime.now(UTC) - timedelta(days=300))
    await order(points_client, member, "20.00", at=datetime.now(UTC) - timedelta(days=100))
    status = await balance(points_client, member)
    assert [x["points"] for x in status["expiring_soon"]] == [10, 20]

    at = datetime.now(UTC) + timedelta(days=70)  # past the first lot's date only
    await run_jobs(points_app, at, member)
    await run_jobs(points_app, at, member)
    status = await balance(points_client, member)
    assert status["available"] == 20
    assert [x["points"] for x in status["expiring_soon"]] == [20]
    expired = await outbox_payloads(engine, member, "loyalty.points.expired.v1")
    assert len(expired) == 1 and expired[0]["points"] == 10 and len(expired[0]["lots"]) == 1
    ledger = (await points_client.get(f"/v1/members/{member}/ledger")).json()["items"]
    assert ledger[0]["type"] == "expire" and ledger[0]["points"] == -10


# --- adjustments ------------------------------------------------------------------------


async def test_adjustments_carry_reason_and_operator(
    points_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    member = await enrol(points_client)
    path = f"/v1/members/{member}/adjustments"
    added = await points_client.post(
        path, json={"points": 500, "reason": "goodwill for late delivery"}, headers=ops()
    )
    assert added.status_code == 201, added.text
    assert added.json()["balance"]["available"] == 500
    removed = await points_client.post(
        path, json={"points": -200, "reason": "duplicate goodwill"}, headers=ops("op-bob")
    )
    assert removed.status_code == 201
    assert removed.json()["balance"]["available"] == 300
    too_much = await points_client.post(
        path, json={"points": -301, "reason": "oops"}, headers=ops()
    )
    assert too_much.status_code == 409
    ledger = (await points_client.get(f"/v1/members/{member}/ledger")).json()["items"]
    assert [(e["type"], e["points"], e["operator"]) for e in ledger] == [
        ("adjust", -200, "op-bob"),
        ("adjust", 500, "op-alice"),
    ]
    assert ledger[1]["reason"] == "goodwill for late delivery"
    adjusted = await outbox_payloads(engine, member, "loyalty.points.adjusted.v1")
    assert [(a["points"], a["operator"]) for a in adjusted] == [(500, "op-alice"), (-200, "op-bob")]


# --- ledger paging ----------------------------------------------------------------------


async def test_ledger_pages_newest_first_with_a_cursor(points_client: httpx.AsyncClient) -> None:
    member = await enrol(points_client)
    for amount in ("1.00", "2.00", "3.00", "4.00", "5.00"):
        await order(points_client, member, amount)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await points_client.get(f"/v1/members/{member}/ledger", params=params)).json()
        seen += [e["points"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1] and pages == 3


# --- Idempotency-Key on POSTs that have a natural key too -------------------------------


async def test_idempotency_key_on_orders_and_members(points_client: httpx.AsyncClient) -> None:
    member = uid("m")
    headers = key()
    first = await points_client.post("/v1/members", json={"member_id": member}, headers=headers)
    again = await points_client.post("/v1/members", json={"member_id": member}, headers=headers)
    assert first.status_code == again.status_code == 201  # the first status is replayed
    other = await points_client.post("/v1/members", json={"member_id": uid("m")}, headers=headers)
    assert other.status_code == 409

    headers = key()
    payload = {
        "order_id": uid("o"),
        "member_id": member,
        "amount": "12.00",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    assert (
        await points_client.post("/v1/orders", json=payload, headers=headers)
    ).status_code == 201
    changed = {**payload, "order_id": uid("o")}
    reused = await points_client.post("/v1/orders", json=changed, headers=headers)
    assert reused.status_code == 409
    assert (await balance(points_client, member))["available"] == 12


async def test_refund_after_the_points_expired_does_not_take_them_twice(
    points_client: httpx.AsyncClient, points_app: Any
) -> None:
    member = await enrol(points_client)
    old = await order(points_client, member, "40.00", at=datetime.now(UTC) - timedelta(days=364))
    await run_jobs(points_app, datetime.now(UTC) + timedelta(days=3), member)  # 40 expire
    await order(points_client, member, "50.00")
    refund = await points_client.post(
        f"/v1/orders/{old['order_id']}/refunds", json={"refund_id": uid("r"), "amount": "40.00"}
    )
    body = refund.json()
    assert body["points_reversed"] == 40 and body["already_expired"] == 40
    assert body["debt_added"] == 0
    assert body["balance"] == {"available": 50, "pending": 0, "debt": 0}


async def test_the_worker_runs_the_ledger_jobs(
    points_client: httpx.AsyncClient, points_app: Any, engine: AsyncEngine
) -> None:
    """An imported order whose points are already past their date: the worker expires them."""
    member = await enrol(points_client)
    await order(points_client, member, "33.00", at=datetime.now(UTC) - timedelta(days=400))
    assert (await balance(points_client, member))["available"] == 33
    worker = ledger_jobs_worker(
        points_app.state.settings.model_copy(update={"ledger_jobs_interval_seconds": 0.1}),
        points_app.state.sessionmaker,
    )

    async def expired() -> bool:
        return (await balance(points_client, member))["available"] == 0

    async with background(worker):
        await eventually(expired)
    assert (await outbox_payloads(engine, member, "loyalty.points.expired.v1"))[0]["points"] == 33


async def test_stored_idempotent_answers_are_forgotten_after_the_retention(
    points_client: httpx.AsyncClient, points_app: Any, engine: AsyncEngine
) -> None:
    member = await enrol(points_client)
    await order(points_client, member, "20.00")
    headers = key()
    path = f"/v1/members/{member}/redemptions"
    first = await points_client.post(path, json={"points": 5}, headers=headers)
    assert first.status_code == 201
    async with points_app.state.sessionmaker() as session, session.begin():
        assert await prune(session, idempotency_keys, datetime.now(UTC) - timedelta(hours=1)) == 0
    async with points_app.state.sessionmaker() as session, session.begin():
        pruned = await prune(session, idempotency_keys, datetime.now(UTC) + timedelta(hours=1))
    assert pruned >= 1
    again = await points_client.post(path, json={"points": 5}, headers=headers)
    assert again.status_code == 201  # no stored answer any more: it ran again
    assert again.json()["redemption_id"] != first.json()["redemption_id"]
    assert (await balance(points_client, member))["available"] == 10
