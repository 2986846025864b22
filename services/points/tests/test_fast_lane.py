"""The fast lane (``hotpath.fast_lane.FastLane``) answers exactly as the full FastAPI stack.

Two apps on the same database: the service as built (checkout and member status go down the
fast lane) and the same app without the fast lane. Every answer, error or not, must be the
same bytes and headers (the request id aside, which is per request).
"""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from loyalty_shared.hotpath.fast_lane import FastLane
from loyalty_shared.testing import asgi_client, running_app
from points.main import create_app
from points.settings import PointsSettings


def mid() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def order(member_id: str, **extra: object) -> dict[str, Any]:
    return {
        "order_id": f"o-{uuid.uuid4().hex[:12]}",
        "member_id": member_id,
        "amount": "128.90",
        "occurred_at": datetime.now(UTC).isoformat(),
        **extra,
    }


def without_fast_lane(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastLane]
    return app


@pytest.fixture
async def apps(points_settings: PointsSettings) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    fast = create_app(points_settings)
    full = without_fast_lane(create_app(points_settings))
    assert any(m.cls is FastLane for m in fast.user_middleware)
    async with running_app(fast), running_app(full):
        yield fast, full


def routed(app: FastAPI, path: str, method: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record when a router hands the route a request (the full stack's way in).

    (Front routes are module-level objects: both apps share them.)
    """
    calls: list[str] = []
    route = next(
        r
        for r in app.router.routes
        if isinstance(r, APIRoute) and r.path == path and method in r.methods
    )
    handle = route.handle

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await handle(scope, receive, send)

    monkeypatch.setattr(route, "handle", spy)
    return calls


def comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]
    return response.status_code, headers, response.content


async def both(
    apps: tuple[FastAPI, FastAPI], method: str, path: str, **kwargs: Any
) -> tuple[httpx.Response, httpx.Response]:
    answers = []
    for app in apps:
        async with asgi_client(app) as client:
            answers.append(await client.request(method, path, **kwargs))
    return answers[0], answers[1]


async def enrol(app: FastAPI, member: str) -> None:
    async with asgi_client(app) as client:
        assert (await client.post("/v1/members", json={"member_id": member})).status_code == 201


async def test_hot_routes_skip_the_router_unless_the_full_stack_must_answer(
    apps: tuple[FastAPI, FastAPI], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, full = apps
    member = mid()
    await enrol(fast, member)
    orders = routed(fast, "/v1/orders", "POST", monkeypatch)
    status = routed(fast, "/v1/members/{member_id}", "GET", monkeypatch)
    async with asgi_client(fast) as client:
        assert (await client.post("/v1/orders", json=order(member))).status_code == 201
        assert (await client.get(f"/v1/members/{member}")).status_code == 200
        # not valid for the path parameter: the full stack answers (with its own error)
        assert (await client.get("/v1/members/bad$id")).status_code == 422
    assert orders == []
    assert status == ["/v1/members/bad$id"]
    async with asgi_client(full) as client:
        assert (await client.post("/v1/orders", json=order(member))).status_code == 201
    assert orders == ["/v1/orders"]


@pytest.mark.parametrize(
    ("name", "request_kwargs"),
    [
        ("malformed JSON", {"content": b"{", "headers": {"content-type": "application/json"}}),
        ("no body", {}),
        ("invalid fields", {"json": {"order_id": "o 1", "amount": "-1", "extra": 1}}),
        (
            "bad idempotency key",
            {"json": {"order_id": "o-x"}, "headers": {"Idempotency-Key": "has space"}},
        ),
    ],
)
async def test_bad_checkouts_get_the_same_answer(
    apps: tuple[FastAPI, FastAPI], name: str, request_kwargs: dict[str, Any]
) -> None:
    fast, full = await both(apps, "POST", "/v1/orders", **request_kwargs)
    assert fast.status_code in (400, 422), name
    assert comparable(fast) == comparable(full)


async def test_domain_errors_get_the_same_answer(apps: tuple[FastAPI, FastAPI]) -> None:
    unknown = order(mid())
    fast, full = await both(apps, "POST", "/v1/orders", json=unknown)
    assert fast.status_code == 422
    assert comparable(fast) == comparable(full)

    member = mid()
    await enrol(apps[0], member)
    first = order(member)
    async with asgi_client(apps[0]) as client:
        assert (await client.post("/v1/orders", json=first)).status_code == 201
    changed = {**first, "amount": "5.00"}
    fast, full = await both(apps, "POST", "/v1/orders", json=changed)
    assert fast.status_code == 409
    assert comparable(fast) == comparable(full)

    for path in (f"/v1/members/{mid()}", "/v1/members/bad$id", "/v1/members/"):
        fast, full = await both(apps, "GET", path)
        assert fast.status_code in (307, 404, 422), path
        assert comparable(fast) == comparable(full)


async def test_answers_and_replays_are_the_same(apps: tuple[FastAPI, FastAPI]) -> None:
    member = mid()
    await enrol(apps[0], member)
    body = order(member)
    key = f"k-{uuid.uuid4().hex}"
    async with asgi_client(apps[0]) as client:
        first = await client.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    assert first.headers["content-type"] == "application/json"
    fast, full = await both(apps, "POST", "/v1/orders", json=body)  # replay by order id
    assert comparable(fast) == comparable(full) == comparable(first)
    fast, full = await both(apps, "POST", "/v1/orders", json=body, headers={"Idempotency-Key": key})
    assert fast.headers["idempotent-replayed"] == "true"
    assert comparable(fast) == comparable(full)
    fast, full = await both(apps, "GET", f"/v1/members/{member}")
    assert fast.status_code == 200
    assert comparable(fast) == comparable(full)
    assert fast.json()["balance"]["available"] == 128


async def test_request_id_metrics_and_access_log_on_the_fast_lane(
    apps: tuple[FastAPI, FastAPI], capfd: pytest.CaptureFixture[str]
) -> None:
    fast = apps[0]
    member = mid()
    await enrol(fast, member)
    request_id = f"req-{uuid.uuid4().hex}"
    async with asgi_client(fast) as client:
        capfd.readouterr()
        answer = await client.post(
            "/v1/orders", json=order(member), headers={"X-Request-ID": request_id}
        )
        made = await client.get(f"/v1/members/{member}")
        logged = capfd.readouterr().out
        metrics = (await client.get("/metrics")).text
    assert answer.status_code == 201 and answer.headers["x-request-id"] == request_id
    assert len(made.headers["x-request-id"]) == 32
    lines = [orjson.loads(line) for line in logged.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("msg") == "request"]
    assert {(a["method"], a["route"], a["status"]) for a in access} == {
        ("POST", "/v1/orders", 201),
        ("GET", "/v1/members/{member_id}", 200),
    }
    assert next(a for a in access if a["method"] == "POST")["request_id"] == request_id
    assert 'http_requests_total{method="POST",route="/v1/orders",status="201"}' in metrics
    assert (
        'http_requests_total{method="GET",route="/v1/members/{member_id}",status="200"}' in metrics
    )
