"""The services answer only the gateway: X-Gateway-Token on every call, 401 without it.

Direct calls here are what anyone on the services' network could send: without the
gateway's token they are refused before any route runs, forged identity headers and all.
"""

import uuid

import httpx
import pytest
from fastapi import FastAPI

from feedback.main import create_app as create_feedback
from feedback.settings import FeedbackSettings
from gateway.main import create_app as create_gateway
from gateway.testing import echo_app, gateway_over, make_gateway_settings
from loyalty_shared.settings import DEV_GATEWAY_SECRET
from loyalty_shared.testing import RoutingTransport, asgi_client, running_app
from points.main import create_app as create_points
from points.settings import PointsSettings
from points.testing import enrol
from segmentation.main import create_app as create_segmentation
from segmentation.settings import SegmentationSettings
from webhooks.main import create_app as create_webhooks
from webhooks.settings import WebhooksSettings

SERVICES = ("points", "segmentation", "feedback", "webhooks")
# a route of each service that a forged caller would like to read
READS = {
    "points": "/v1/members/{m}",
    "segmentation": "/v1/profiles/{m}",
    "feedback": "/v1/feedback/members/{m}",
    "webhooks": "/v1/webhooks",
}
LONG_SECRET = "s" * 40


@pytest.fixture
def apps(
    points_app: FastAPI, segmentation_app: FastAPI, feedback_app: FastAPI, webhooks_app: FastAPI
) -> dict[str, FastAPI]:
    return {
        "points": points_app,
        "segmentation": segmentation_app,
        "feedback": feedback_app,
        "webhooks": webhooks_app,
    }


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/gateway-token-required")
    assert body["status"] == 401
    assert response.headers["www-authenticate"].startswith("GatewayToken")


@pytest.mark.parametrize("service", SERVICES)
async def test_a_call_without_the_gateway_token_is_401(
    apps: dict[str, FastAPI], service: str
) -> None:
    path = READS[service].format(m="m-1")
    async with asgi_client(apps[service], as_gateway=False) as anyone:
        _assert_refused(await anyone.get(path))
        _assert_refused(await anyone.get(path, headers={"X-Gateway-Token": "guess"}))
        _assert_refused(await anyone.get(path, headers={"X-Gateway-Token": ""}))
        # not even an unknown route says more than that
        _assert_refused(await anyone.post("/v1/nothing-here", json={}))
    async with asgi_client(apps[service]) as gateway:
        assert (await gateway.get(path)).status_code != 401


@pytest.mark.parametrize("service", SERVICES)
async def test_probes_metrics_and_docs_stay_open_and_ready_detail_needs_the_token(
    apps: dict[str, FastAPI], service: str
) -> None:
    async with asgi_client(apps[service], as_gateway=False) as anyone:
        for path in ("/health", "/metrics", "/openapi.json", "/docs", "/redoc"):
            assert (await anyone.get(path)).status_code == 200, path
        ready = await anyone.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": None}
    async with asgi_client(apps[service]) as gateway:
        checks = (await gateway.get("/ready")).json()["checks"]
        assert set(checks) >= {"database", "broker"}


async def test_forged_identity_headers_without_the_token_change_nothing(
    points_app: FastAPI, points_client: httpx.AsyncClient
) -> None:
    member = await enrol(points_client)
    forged = {
        "X-Caller-Scope": "admin",
        "X-Operator-Id": "mallory",
        "Idempotency-Key": uuid.uuid4().hex,
    }
    async with asgi_client(points_app, as_gateway=False) as anyone:
        grant = await anyone.post(
            f"/v1/members/{member}/adjustments",
            json={"points": 1_000_000, "reason": "a present to myself"},
            headers=forged,
        )
        _assert_refused(grant)
        # nor can a member token's identity be claimed
        peek = await anyone.get(
            f"/v1/members/{member}", headers={"X-Caller-Scope": "member", "X-Member-Id": member}
        )
        _assert_refused(peek)
    account = (await points_client.get(f"/v1/members/{member}")).json()
    assert account["balance"]["available"] == 0
    ledger = (await points_client.get(f"/v1/members/{member}/ledger")).json()["items"]
    assert ledger == []


async def test_the_gateway_sends_its_token_and_drops_a_clients() -> None:
    echo = echo_app()
    transport = RoutingTransport(
        {"points": echo, "segmentation": echo, "feedback": echo, "webhooks": echo}  # type: ignore[dict-item]
    )
    async with gateway_over(transport, upstream_secret=LONG_SECRET) as client:
        seen = await client.get("/v1/members/m-1", headers={"X-Gateway-Token": "from-a-client"})
    assert seen.status_code == 200
    assert seen.json()["headers"]["x-gateway-token"] == LONG_SECRET


async def test_through_the_gateway_the_services_answer(gateway_client: httpx.AsyncClient) -> None:
    member = f"m-{uuid.uuid4().hex[:10]}"
    created = await gateway_client.post("/v1/members", json={"member_id": member})
    assert created.status_code == 201, created.text
    assert (await gateway_client.get(f"/v1/members/{member}")).status_code == 200
    assert (await gateway_client.get(f"/v1/profiles/{member}")).status_code in (200, 404)


# -- start-up: no secret, no service ---------------------------------------------------------
SERVICE_FACTORIES = {
    "points": (PointsSettings, create_points),
    "segmentation": (SegmentationSettings, create_segmentation),
    "feedback": (FeedbackSettings, create_feedback),
    "webhooks": (WebhooksSettings, create_webhooks),
}


def _production(settings_cls: type, **values: str) -> object:
    return settings_cls(
        environment="production",
        database_url="postgresql+asyncpg://u:p@db/x",
        erasure_hmac_secret="e" * 40,
        **values,
    )


@pytest.mark.parametrize("service", SERVICES)
def test_outside_dev_a_service_refuses_to_start_without_a_long_secret(service: str) -> None:
    settings_cls, create = SERVICE_FACTORIES[service]
    prefix = service.upper()
    with pytest.raises(RuntimeError, match=f"{prefix}_GATEWAY_SECRET is not set"):
        create(_production(settings_cls))
    with pytest.raises(RuntimeError, match="32\\+ characters"):
        create(_production(settings_cls, gateway_secret="short"))
    with pytest.raises(RuntimeError, match="32\\+ characters"):
        create(_production(settings_cls, gateway_secret=LONG_SECRET, gateway_secret_previous="x"))
    assert create(_production(settings_cls, gateway_secret=LONG_SECRET)).title
    # the documented dev secret is for dev and test only
    dev = settings_cls(environment="dev", database_url="postgresql+asyncpg://u:p@db/x")
    assert dev.gateway_secrets() == (DEV_GATEWAY_SECRET.encode(),)


def test_outside_dev_the_gateway_refuses_to_start_without_its_secret() -> None:
    production = {"environment": "production"}
    with pytest.raises(RuntimeError, match="GATEWAY_UPSTREAM_SECRET"):
        create_gateway(make_gateway_settings(**production))
    with pytest.raises(RuntimeError, match="GATEWAY_UPSTREAM_SECRET"):
        create_gateway(make_gateway_settings(**production, upstream_secret="short"))
    assert create_gateway(make_gateway_settings(**production, upstream_secret=LONG_SECRET)).title


async def test_a_rotated_secret_is_accepted_next_to_the_new_one(
    points_settings: PointsSettings,
) -> None:
    old, new = "o" * 40, "n" * 40
    settings = points_settings.model_copy(
        update={"gateway_secret": new, "gateway_secret_previous": old}
    )
    async with (
        running_app(create_points(settings)) as app,
        asgi_client(app, as_gateway=False) as client,
    ):
        for token, status in ((new, 200), (old, 200), (DEV_GATEWAY_SECRET, 401), ("n" * 39, 401)):
            answer = await client.get("/v1/tiers", headers={"X-Gateway-Token": token})
            assert answer.status_code == status, token
