"""``hotpath.fast_lane.FastLane`` on a service without a database: every kind of answer a
marked front route can give (success, domain error, validation error, HTTP error, unexpected
error, bad path parameter) is the one the full FastAPI stack gives; FastAPI's telemetry
switch."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from loyalty_shared import app as app_module
from loyalty_shared.app import TELEMETRY_OFF, create_service_app, fastapi_telemetry
from loyalty_shared.hotpath.fast_lane import FastLane, fast_lane
from loyalty_shared.lean import json_response, read_json
from loyalty_shared.problems import Conflict
from loyalty_shared.settings import CommonSettings
from loyalty_shared.testing import gateway_headers, running_app

Small = Annotated[int, Field(ge=1, le=100)]


class Spend(BaseModel):
    points: int = Field(gt=0)


class NotEnough(Conflict):
    slug = "not-enough"
    title = "Not enough points"


def _front() -> APIRouter:
    router = APIRouter(prefix="/hot", tags=["hot"])

    @router.post("/spend", status_code=201)
    @fast_lane()
    async def spend(request: Request) -> Response:
        body = await read_json(request, Spend)
        if body.points > 10:
            raise NotEnough("You have 10 points", available=10)
        if body.points == 7:
            raise HTTPException(status_code=418, detail="teapot", headers={"X-Why": "7"})
        if body.points == 9:
            raise RuntimeError("secret internals")
        return json_response(body, 201, headers={"X-Spent": str(body.points)})

    @router.get("/items/{item_id}")
    @fast_lane(item_id=Small)
    async def item(item_id: Annotated[Small, Path()], request: Request) -> Response:
        return json_response(Spend(points=item_id))

    return router


def _build(fast: bool) -> FastAPI:
    settings = CommonSettings(environment="test", service_name="demo")
    service = create_service_app(
        settings,
        title="demo",
        description="demo",
        routers=[],
        front_routers=[_front()],
        with_database=False,
    )
    if not fast:
        service.user_middleware = [m for m in service.user_middleware if m.cls is not FastLane]
    return service


@pytest.fixture(scope="module")
async def apps() -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    fast, full = _build(True), _build(False)
    async with running_app(fast), running_app(full):
        yield fast, full


def comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]
    return response.status_code, headers, response.content


async def both(apps: tuple[FastAPI, FastAPI], method: str, path: str, **kwargs: Any) -> list[Any]:
    answers = []
    for app in apps:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=gateway_headers()
        ) as client:
            answers.append(comparable(await client.request(method, path, **kwargs)))
    return answers


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/hot/spend", {"json": {"points": 3}}, 201),
        ("POST", "/hot/spend", {"json": {"points": 30}}, 409),
        ("POST", "/hot/spend", {"json": {"points": 7}}, 418),
        ("POST", "/hot/spend", {"json": {"points": 9}}, 500),
        ("POST", "/hot/spend", {"json": {"points": "x"}}, 422),
        ("POST", "/hot/spend", {"content": b"{", "headers": {"content-type": "x"}}, 400),
        ("POST", "/hot/spend", {}, 422),
        ("GET", "/hot/spend", {}, 405),
        ("GET", "/hot/items/5", {}, 200),
        ("GET", "/hot/items/500", {}, 422),
        ("GET", "/hot/items/five", {}, 422),
        ("HEAD", "/hot/items/5", {}, 405),
    ],
)
async def test_every_answer_is_the_full_stacks(
    apps: tuple[FastAPI, FastAPI], method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    fast, full = await both(apps, method, path, **kwargs)
    assert fast[0] == status
    assert fast == full


async def test_metrics_count_each_request_once(apps: tuple[FastAPI, FastAPI]) -> None:
    line = 'http_requests_total{method="GET",route="/hot/items/{item_id}",status="200"} '

    def count(metrics: str) -> float:
        found = [x for x in metrics.splitlines() if x.startswith(line)]
        return float(found[0].removeprefix(line)) if found else 0.0

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=apps[0]),
        base_url="http://test",
        headers=gateway_headers(),
    ) as client:
        before = count((await client.get("/metrics")).text)
        for _ in range(3):
            assert (await client.get("/hot/items/42")).status_code == 200
        after = count((await client.get("/metrics")).text)
    assert after - before == 3


def test_fastapi_telemetry_is_off_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE", raising=False)
    assert fastapi_telemetry() == TELEMETRY_OFF
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    assert fastapi_telemetry() is None
    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE")
    monkeypatch.setattr(app_module.trace, "get_tracer_provider", lambda: object())
    assert fastapi_telemetry() is None
