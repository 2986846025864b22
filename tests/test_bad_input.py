"""Bad input through the gateway: a 4xx problem-details answer naming the fault, nothing written."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from points.settings import PointsSettings

PROBLEM_JSON = "application/problem+json"


@dataclass
class Member:
    member_id: str
    status: dict[str, Any]
    outbox_rows: int


@pytest.fixture(scope="module")
async def points_engine(points_settings: PointsSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(points_settings.sqlalchemy_url())
    yield engine
    await engine.dispose()


async def _outbox_rows(engine: AsyncEngine, member: str) -> int:
    async with engine.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE key = :m"), {"m": member})
        ).scalar_one()
    return int(count)


async def _status(client: httpx.AsyncClient, member: str) -> dict[str, Any]:
    response = await client.get(f"/v1/members/{member}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _order(member: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": f"o-{uuid.uuid4().hex[:12]}",
        "member_id": member,
        "amount": "120.00",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
async def member(gateway_client: httpx.AsyncClient, points_engine: AsyncEngine) -> Member:
    """An enrolled member with one order (a non-zero balance) and the state to compare with."""
    member_id = f"m-{uuid.uuid4().hex[:10]}"
    enrolled = await gateway_client.post("/v1/members", json={"member_id": member_id})
    assert enrolled.status_code == 201, enrolled.text
    ordered = await gateway_client.post("/v1/orders", json=_order(member_id))
    assert ordered.status_code == 201, ordered.text
    return Member(
        member_id,
        await _status(gateway_client, member_id),
        await _outbox_rows(points_engine, member_id),
    )


async def _nothing_written(client: httpx.AsyncClient, engine: AsyncEngine, member: Member) -> None:
    assert await _status(client, member.member_id) == member.status
    assert await _outbox_rows(engine, member.member_id) == member.outbox_rows


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert "type" in body
    return body


async def test_invalid_json_is_a_400_problem_and_writes_nothing(
    gateway_client: httpx.AsyncClient, points_engine: AsyncEngine, member: Member
) -> None:
    response = await gateway_client.post(
        "/v1/orders",
        content=b'{"order_id": "o-broken", "member_id": "' + member.member_id.encode() + b'", ',
        headers={"Content-Type": "application/json"},
    )
    _problem(response, 400)
    await _nothing_written(gateway_client, points_engine, member)


async def test_missing_field_is_a_422_naming_the_field_and_writes_nothing(
    gateway_client: httpx.AsyncClient, points_engine: AsyncEngine, member: Member
) -> None:
    response = await gateway_client.post(
        "/v1/orders", json=_order(member.member_id, occurred_at=None)
    )
    body = _problem(response, 422)
    fields = [error["field"].rsplit(".", 1)[-1] for error in body["errors"]]
    assert fields == ["occurred_at"]
    assert "occurred_at" in body["detail"]
    await _nothing_written(gateway_client, points_engine, member)


async def test_negative_amount_is_a_422_naming_the_field_and_writes_nothing(
    gateway_client: httpx.AsyncClient, points_engine: AsyncEngine, member: Member
) -> None:
    response = await gateway_client.post(
        "/v1/orders", json=_order(member.member_id, amount="-5.00")
    )
    body = _problem(response, 422)
    assert [error["field"].rsplit(".", 1)[-1] for error in body["errors"]] == ["amount"]
    await _nothing_written(gateway_client, points_engine, member)


@pytest.mark.parametrize("path", ["/v1/no-such-thing", "/nowhere", "/v2/orders"])
async def test_unknown_route_is_a_404_problem(
    gateway_client: httpx.AsyncClient, points_engine: AsyncEngine, member: Member, path: str
) -> None:
    response = await gateway_client.post(path, json=_order(member.member_id))
    body = _problem(response, 404)
    assert path in body["detail"]
    await _nothing_written(gateway_client, points_engine, member)


@pytest.mark.parametrize(("method", "path"), [("POST", "/health"), ("DELETE", "/openapi.json")])
async def test_wrong_method_on_a_gateway_route_is_a_405_problem(
    gateway_client: httpx.AsyncClient,
    points_engine: AsyncEngine,
    member: Member,
    method: str,
    path: str,
) -> None:
    response = await gateway_client.request(method, path, json=_order(member.member_id))
    _problem(response, 405)
    await _nothing_written(gateway_client, points_engine, member)


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/v1/orders"), ("PUT", "/v1/members")])
async def test_wrong_method_on_a_service_route_is_a_405_problem_and_writes_nothing(
    gateway_client: httpx.AsyncClient,
    points_client: httpx.AsyncClient,
    points_engine: AsyncEngine,
    member: Member,
    method: str,
    path: str,
) -> None:
    # The gateway refuses what its policy table does not list before any service is asked,
    # with the service's own answer (405); nothing is forwarded or written.
    through_gateway = await gateway_client.request(method, path, json=_order(member.member_id))
    _problem(through_gateway, 405)
    direct = await points_client.request(method, path, json=_order(member.member_id))
    body = _problem(direct, 405)
    assert method in body["detail"]
    await _nothing_written(gateway_client, points_engine, member)
