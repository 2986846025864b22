"""RFC 9457 problem details, request ids and metrics on a service built with create_service_app."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field

from loyalty_shared.app import create_service_app
from loyalty_shared.problems import Conflict
from loyalty_shared.settings import CommonSettings
from loyalty_shared.testing import asgi_client, gateway_headers, running_app


class InsufficientPoints(Conflict):
    slug = "insufficient-points"
    title = "Not enough points"


class Thing(BaseModel):
    name: str = Field(min_length=1)
    amount: int = Field(gt=0)


def _router() -> APIRouter:
    router = APIRouter()

    @router.post("/things", status_code=201)
    async def create(thing: Thing) -> Thing:
        return thing

    @router.post("/spend")
    async def spend() -> None:
        raise InsufficientPoints("You have 10 points, this needs 30", available=10, required=30)

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return router


@pytest.fixture(scope="module")
async def app() -> AsyncIterator[FastAPI]:
    settings = CommonSettings(environment="test", service_name="demo")
    service = create_service_app(
        settings, title="demo", description="demo", routers=[_router()], with_database=False
    )
    async with running_app(service) as started:
        yield started


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


def _is_problem(response: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


async def test_validation_errors_name_each_field(client: httpx.AsyncClient) -> None:
    body = _is_problem(await client.post("/things", json={"name": "", "amount": -1}), 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"body.name", "body.amount"}
    assert body["type"].endswith("/validation-error")


async def test_missing_field(client: httpx.AsyncClient) -> None:
    body = _is_problem(await client.post("/things", json={"name": "x"}), 422)
    assert [e["field"] for e in body["errors"]] == ["body.amount"]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/things", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    body = _is_problem(response, 400)
    assert body["type"].endswith("/malformed-json")


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    body = _is_problem(await client.get("/nowhere"), 404)
    assert "/nowhere" in body["detail"]
    body = _is_problem(await client.delete("/things"), 405)
    assert "DELETE" in body["detail"]


async def test_domain_error_carries_slug_and_extensions(client: httpx.AsyncClient) -> None:
    body = _is_problem(await client.post("/spend"), 409)
    assert body["type"].endswith("/insufficient-points")
    assert body["available"] == 10 and body["required"] == 30
    assert body["instance"] == "/spend"


async def test_unexpected_error_is_a_500_problem_without_internals(app: FastAPI) -> None:
    # Starlette re-raises after answering (so servers log it); the client still gets the problem
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=gateway_headers()
    ) as client:
        response = await client.get("/boom")
    body = _is_problem(response, 500)
    assert "secret" not in body["detail"]


async def test_request_id_is_taken_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/health")
    assert len(made.headers["x-request-id"]) == 32
    unsafe = await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_metrics_count_requests_by_route(client: httpx.AsyncClient) -> None:
    await client.post("/things", json={"name": "a", "amount": 1})
    metrics = (await client.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/things",status="201"}' in metrics
    assert "http_request_duration_seconds_bucket" in metrics


async def test_docs_are_served_without_a_cdn(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    assert "cdn" not in page.lower()
    assert (await client.get("/docs-assets/swagger-ui-bundle.js")).status_code == 200


async def test_an_unreachable_database_is_a_503_problem_with_retry_after() -> None:
    from sqlalchemy import text

    from loyalty_shared.db import HotTransaction, Session
    from loyalty_shared.devstack.broker import free_port
    from loyalty_shared.hotpath.pool import DriverAutocommit

    router = APIRouter()

    @router.get("/through-the-session")
    async def through_session(session: Session) -> dict[str, int]:
        return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}

    @router.get("/hot")
    async def hot(request: Request) -> dict[str, int]:
        async with HotTransaction(request.app.state.engine) as session:
            return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}

    @router.get("/driver")
    async def driver(request: Request) -> dict[str, int]:
        async with DriverAutocommit(request.app.state.engine) as conn:
            return {"one": await conn.fetchval("SELECT 1")}

    closed_port = free_port()  # nothing listens there
    for url in (
        f"postgresql://nobody@127.0.0.1:{closed_port}/nothing",
        # a server that is restarting on a unix socket: the socket file is gone
        "postgresql://nobody@/nothing?host=/tmp/no-such-postgres-dir",
    ):
        settings = CommonSettings(environment="test", service_name="demo", database_url=url)
        service = create_service_app(settings, title="demo", description="demo", routers=[router])
        async with running_app(service) as started, asgi_client(started) as client:
            for path in ("/through-the-session", "/hot", "/driver"):
                response = await client.get(path)
                assert response.status_code == 503, (url, path, response.text)
                assert response.headers["retry-after"] == "1"
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"].endswith("/database-unavailable")


async def test_a_deadlock_is_a_503_to_retry_never_a_500(infra) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from loyalty_shared.db import Session

    router = APIRouter()

    @router.post("/collide")
    async def collide(session: Session) -> None:
        # what Postgres raises when two writers wait on each other (SQLSTATE 40P01)
        await session.execute(
            text("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$")
        )

    url = await infra.create_database("busy")
    settings = CommonSettings(environment="test", service_name="demo", database_url=url)
    service = create_service_app(settings, title="demo", description="demo", routers=[router])
    async with running_app(service) as started, asgi_client(started) as client:
        response = await client.post("/collide")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"].endswith("/database-busy")


async def test_ready_is_503_without_the_database_and_degraded_without_the_broker(  # type: ignore[no-untyped-def]
    infra,
) -> None:
    """A broker outage must not take the APIs out of rotation: writes still commit their
    events to the outbox. A database outage does."""
    from loyalty_shared.devstack.broker import free_port

    url = await infra.create_database("ready")
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    cases = [
        (url, infra.kafka_bootstrap, 200, "ready", set()),
        (url, closed, 200, "degraded", {"broker"}),
        (
            f"postgresql+asyncpg://nobody@{closed}/nothing",
            infra.kafka_bootstrap,
            503,
            "not-ready",
            {"database"},
        ),
    ]
    for database, broker, status, word, failing in cases:
        settings = CommonSettings(
            environment="test", service_name="demo", database_url=database, kafka_bootstrap=broker
        )
        service = create_service_app(settings, title="demo", description="demo", routers=[])
        async with running_app(service) as started, asgi_client(started) as client:
            anyone = await client.get("/ready", headers={"X-Gateway-Token": ""})
            assert (anyone.status_code, anyone.json()) == (status, {"status": word, "checks": None})
            detail = (await client.get("/ready", headers=gateway_headers())).json()["checks"]
            assert {name for name, check in detail.items() if not check["ok"]} == failing
