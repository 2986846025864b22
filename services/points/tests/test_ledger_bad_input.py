"""Every ledger endpoint's bad input: a problem-details 4xx naming the field, nothing written."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
async def engine(points_db: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(points_db)
    yield eng
    await eng.dispose()


async def footprint(engine: AsyncEngine, member: str) -> tuple[int, ...]:
    """Everything a write for this member could leave behind."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM ledger_entries WHERE member_id = :m),"
                    " (SELECT count(*) FROM lots WHERE member_id = :m),"
                    " (SELECT count(*) FROM outbox WHERE key = :m),"
                    " (SELECT count(*) FROM refunds WHERE member_id = :m),"
                    " (SELECT count(*) FROM redemptions WHERE member_id = :m),"
                    " (SELECT available + pending + debt FROM balances WHERE member_id = :m),"
                    " (SELECT count(*) FROM idempotency_keys)"
                ),
                {"m": member},
            )
        ).one()
    return tuple(row)


@pytest.fixture
async def funded(points_client: httpx.AsyncClient) -> dict[str, str]:
    member = uid("m")
    await points_client.post("/v1/members", json={"member_id": member})
    order_id = uid("o")
    response = await points_client.post(
        "/v1/orders",
        json={
            "order_id": order_id,
            "member_id": member,
            "amount": "100.00",
            "occurred_at": datetime.now(UTC).isoformat(),
        },
    )
    assert response.status_code == 201
    return {"member": member, "order": order_id}


def K() -> dict[str, str]:
    return {"Idempotency-Key": uid("k")}


CASES: list[tuple[str, str, Any, dict[str, str] | None, int, str | None]] = [
    # (id, path template, json body, headers, status, field)
    (
        "refund-negative",
        "/v1/orders/{order}/refunds",
        {"refund_id": "r1", "amount": "-1"},
        None,
        422,
        "body.amount",
    ),
    (
        "refund-zero",
        "/v1/orders/{order}/refunds",
        {"refund_id": "r1", "amount": "0"},
        None,
        422,
        "body.amount",
    ),
    (
        "refund-3-decimals",
        "/v1/orders/{order}/refunds",
        {"refund_id": "r1", "amount": "1.001"},
        None,
        422,
        "body.amount",
    ),
    ("refund-no-id", "/v1/orders/{order}/refunds", {"amount": "1.00"}, None, 422, "body.refund_id"),
    (
        "refund-bad-id",
        "/v1/orders/{order}/refunds",
        {"refund_id": "a b", "amount": "1.00"},
        None,
        422,
        "body.refund_id",
    ),
    (
        "refund-extra",
        "/v1/orders/{order}/refunds",
        {"refund_id": "r1", "amount": "1.00", "x": 1},
        None,
        422,
        "body.x",
    ),
    (
        "refund-naive-time",
        "/v1/orders/{order}/refunds",
        {"refund_id": "r1", "amount": "1.00", "occurred_at": "2025-01-01T00:00:00"},
        None,
        422,
        "body.occurred_at",
    ),
    (
        "refund-above-order",
        "/v1/orders/{order}/refunds",
        {"refund_id": "r1", "amount": "100.01"},
        None,
        422,
        "body.amount",
    ),
    (
        "refund-unknown-order",
        "/v1/orders/nope-{member}/refunds",
        {"refund_id": "r1", "amount": "1.00"},
        None,
        404,
        None,
    ),
    (
        "redeem-no-key",
        "/v1/members/{member}/redemptions",
        {"points": 5},
        {},
        428,
        "header.Idempotency-Key",
    ),
    (
        "redeem-empty-key",
        "/v1/members/{member}/redemptions",
        {"points": 5},
        {"Idempotency-Key": ""},
        422,
        "header.Idempotency-Key",
    ),
    (
        "redeem-both",
        "/v1/members/{member}/redemptions",
        {"points": 5, "reward_id": "x"},
        K,
        422,
        "body",
    ),
    ("redeem-neither", "/v1/members/{member}/redemptions", {}, K, 422, "body"),
    ("redeem-zero", "/v1/members/{member}/redemptions", {"points": 0}, K, 422, "body.points"),
    ("redeem-float", "/v1/members/{member}/redemptions", {"points": 1.5}, K, 422, "body.points"),
    (
        "redeem-quantity-0",
        "/v1/members/{member}/redemptions",
        {"reward_id": "x", "quantity": 0},
        K,
        422,
        "body.quantity",
    ),
    (
        "redeem-unknown-reward",
        "/v1/members/{member}/redemptions",
        {"reward_id": "nope"},
        K,
        422,
        "body.reward_id",
    ),
    ("redeem-too-many", "/v1/members/{member}/redemptions", {"points": 101}, K, 409, None),
    ("redeem-unknown-member", "/v1/members/nope-{member}/redemptions", {"points": 1}, K, 404, None),
    ("cancel-unknown", "/v1/redemptions/nope-{member}/cancel", None, None, 404, None),
    (
        "adjust-no-operator",
        "/v1/members/{member}/adjustments",
        {"points": 5, "reason": "why not"},
        K,
        422,
        "header.X-Operator-Id",
    ),
    (
        "adjust-no-reason",
        "/v1/members/{member}/adjustments",
        {"points": 5},
        "ops",
        422,
        "body.reason",
    ),
    (
        "adjust-blank-reason",
        "/v1/members/{member}/adjustments",
        {"points": 5, "reason": "    "},
        "ops",
        422,
        "body.reason",
    ),
    (
        "adjust-zero",
        "/v1/members/{member}/adjustments",
        {"points": 0, "reason": "nothing"},
        "ops",
        422,
        "body.points",
    ),
    (
        "adjust-string-points",
        "/v1/members/{member}/adjustments",
        {"points": "many", "reason": "x y z"},
        "ops",
        422,
        "body.points",
    ),
    (
        "adjust-no-key",
        "/v1/members/{member}/adjustments",
        {"points": 5, "reason": "x y z"},
        {"X-Operator-Id": "op"},
        428,
        "header.Idempotency-Key",
    ),
    (
        "adjust-below-zero",
        "/v1/members/{member}/adjustments",
        {"points": -101, "reason": "x y z"},
        "ops",
        409,
        None,
    ),
    (
        "adjust-unknown-member",
        "/v1/members/nope-{member}/adjustments",
        {"points": 1, "reason": "x y z"},
        "ops",
        404,
        None,
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
async def test_bad_input_is_a_problem_and_writes_nothing(
    points_client: httpx.AsyncClient,
    engine: AsyncEngine,
    funded: dict[str, str],
    path: str,
    body: Any,
    headers: Any,
    status: int,
    field: str | None,
) -> None:
    if headers is K:
        headers = K()
    elif headers == "ops":
        headers = {**K(), "X-Operator-Id": "op-alice"}
    before = await footprint(engine, funded["member"])
    response = await points_client.post(path.format(**funded), json=body, headers=headers or {})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["type"] and problem["detail"]
    if field is not None:
        assert field in [e["field"] for e in problem["errors"]], problem
    assert await footprint(engine, funded["member"]) == before


async def test_malformed_json_is_400(
    points_client: httpx.AsyncClient, funded: dict[str, str]
) -> None:
    response = await points_client.post(
        f"/v1/members/{funded['member']}/redemptions",
        content=b"{not json",
        headers={"content-type": "application/json", "Idempotency-Key": uid("k")},
    )
    assert response.status_code == 400
    assert response.json()["type"].endswith("/malformed-json")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 500}, "query.limit"),
        ({"cursor": "abc"}, "query.cursor"),
    ],
)
async def test_bad_ledger_paging_is_422(
    points_client: httpx.AsyncClient, funded: dict[str, str], params: dict[str, Any], field: str
) -> None:
    response = await points_client.get(f"/v1/members/{funded['member']}/ledger", params=params)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_ledger_of_unknown_member_is_404(points_client: httpx.AsyncClient) -> None:
    response = await points_client.get(f"/v1/members/{uid('m')}/ledger")
    assert response.status_code == 404
    assert response.json()["type"].endswith("/member-not-found")
