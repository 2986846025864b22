"""Walking skeleton of the points service: enrolment and order earning on real Postgres."""

import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


def mid() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def order(member_id: str, amount: str = "128.90", **extra: object) -> dict[str, object]:
    return {
        "order_id": f"o-{uuid.uuid4().hex[:12]}",
        "member_id": member_id,
        "amount": amount,
        "occurred_at": datetime.now(UTC).isoformat(),
        **extra,
    }


async def test_enrol_is_idempotent(points_client: httpx.AsyncClient) -> None:
    member = mid()
    first = await points_client.post("/v1/members", json={"member_id": member})
    assert first.status_code == 201
    body = first.json()
    assert body["member_id"] == member and body["tier"] == "regular" and body["referral_code"]
    again = await points_client.post("/v1/members", json={"member_id": member})
    assert again.status_code == 200
    assert again.json() == body


async def test_order_earns_one_point_per_yuan_rounded_down_once(
    points_client: httpx.AsyncClient, points_db: str
) -> None:
    member = mid()
    await points_client.post("/v1/members", json={"member_id": member})
    payload = order(member, "128.90")
    first = await points_client.post("/v1/orders", json=payload)
    assert first.status_code == 201, first.text
    assert first.json()["points_earned"] == 128
    assert first.json()["balance"] == {"available": 128, "pending": 0}
    replay = await points_client.post("/v1/orders", json=payload)
    assert replay.status_code == 201
    assert replay.json() == first.json()
    status = (await points_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 128

    engine = create_async_engine(points_db)
    async with engine.connect() as conn:
        entries = (
            await conn.execute(
                text("SELECT count(*), sum(points) FROM ledger_entries WHERE member_id = :m"),
                {"m": member},
            )
        ).one()
        events = (
            (
                await conn.execute(
                    text("SELECT event_type FROM outbox WHERE key = :m ORDER BY id"), {"m": member}
                )
            )
            .scalars()
            .all()
        )
    await engine.dispose()
    assert tuple(entries) == (1, 128)
    assert events == [
        "loyalty.member.enrolled.v1",
        "loyalty.order.recorded.v1",
        "loyalty.points.earned.v1",
    ]


async def test_same_order_id_with_other_body_is_409(points_client: httpx.AsyncClient) -> None:
    member = mid()
    await points_client.post("/v1/members", json={"member_id": member})
    payload = order(member, "10.00")
    assert (await points_client.post("/v1/orders", json=payload)).status_code == 201
    changed = {**payload, "amount": "99.00"}
    response = await points_client.post("/v1/orders", json=changed)
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/idempotency-key-reused")
    status = (await points_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 10


async def test_order_for_unknown_member_is_422(points_client: httpx.AsyncClient) -> None:
    response = await points_client.post("/v1/orders", json=order(mid()))
    assert response.status_code == 422
    assert response.json()["type"].endswith("/unknown-member")


async def test_bad_orders_are_problem_details(points_client: httpx.AsyncClient) -> None:
    member = mid()
    await points_client.post("/v1/members", json={"member_id": member})
    cases = [
        ({**order(member), "amount": "-5"}, "body.amount"),
        ({**order(member), "amount": "1.234"}, "body.amount"),
        ({k: v for k, v in order(member).items() if k != "occurred_at"}, "body.occurred_at"),
        ({**order(member), "occurred_at": "2024-01-01T00:00:00"}, "body.occurred_at"),
        ({**order(member), "currency": "yuan"}, "body.currency"),
        ({**order(member), "surprise": 1}, "body.surprise"),
    ]
    for payload, field in cases:
        response = await points_client.post("/v1/orders", json=payload)
        assert response.status_code == 422, (payload, response.text)
        problem = response.json()
        assert problem["status"] == 422
        assert field in [e["field"] for e in problem["errors"]], problem
    status = (await points_client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 0
