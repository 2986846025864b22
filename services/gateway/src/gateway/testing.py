"""pytest fixtures for the gateway, wired to the in-process services.

``gateway_client`` sends the test admin key by default (admin may call every
route); pass ``headers={"Authorization": ...}`` to act as someone else, using
``TEST_KEYS`` or ``member_token_for``.
"""

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.auth import MemberTokens, hash_key
from gateway.main import create_app
from gateway.settings import ApiKeyConfig, GatewaySettings
from loyalty_shared.testing import RoutingTransport, asgi_client, running_app

TEST_KEYS = {
    "admin": "test-admin-key",
    "ops": "test-ops-key",
    "storefront": "test-storefront-key",
}
TEST_MEMBER_TOKEN_SECRET = "test-member-token-secret-0123456789abcdef"  # noqa: S105


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_gateway_settings(**overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "environment": "test",
        "points_url": "http://points",
        "segmentation_url": "http://segmentation",
        "feedback_url": "http://feedback",
        "webhooks_url": "http://webhooks",
        "upstream_timeout_seconds": 5.0,
        "api_keys": [
            ApiKeyConfig(name=f"test-{scope}", scope=scope, sha256=hash_key(key))
            for scope, key in TEST_KEYS.items()
        ],
        "member_token_secret": TEST_MEMBER_TOKEN_SECRET,
        # The breaker and the limits are tested on gateways of their own (``gateway_over`` with
        # explicit settings); here a test that takes a service down and brings it back must not
        # find its circuit open, nor a suite driving many requests through one key be limited.
        "breaker_failure_threshold": 1_000_000,
        "rate_limits": {
            scope: {"rate": 100_000, "burst": 100_000}
            for scope in ("storefront", "ops", "admin", "member")
        },
    }
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def upstreams(
    points_app: FastAPI, segmentation_app: FastAPI, feedback_app: FastAPI, webhooks_app: FastAPI
) -> RoutingTransport:
    return RoutingTransport(
        {
            "points": points_app,
            "segmentation": segmentation_app,
            "feedback": feedback_app,
            "webhooks": webhooks_app,
        }
    )


@pytest.fixture(scope="session")
def gateway_settings() -> GatewaySettings:
    return make_gateway_settings()


@pytest.fixture(scope="session")
async def gateway_app(
    gateway_settings: GatewaySettings, upstreams: RoutingTransport
) -> AsyncIterator[FastAPI]:
    async with running_app(create_app(gateway_settings, transport=upstreams)) as app:
        yield app


@pytest.fixture
async def gateway_client(
    gateway_app: FastAPI, upstreams: RoutingTransport
) -> AsyncIterator[httpx.AsyncClient]:
    upstreams.down.clear()
    reset_breakers(gateway_app)
    async with asgi_client(gateway_app) as client:
        client.headers.update(bearer(TEST_KEYS["admin"]))
        yield client
    upstreams.down.clear()
    reset_breakers(gateway_app)


def reset_breakers(app: FastAPI) -> None:
    """A test that took a service down must not leave its circuit open for the next one."""
    for breaker in app.state.upstreams.breakers.values():
        breaker.record_success()


@pytest.fixture(scope="session")
def member_token_for() -> Callable[[str], str]:
    """A valid member token for the given member id, signed as the test gateways sign them."""
    tokens = MemberTokens(make_gateway_settings())

    def make(member_id: str) -> str:
        token, _ = tokens.issue(member_id)
        return token

    return make


@asynccontextmanager
async def gateway_over(
    transport: httpx.AsyncBaseTransport, key: str | None = "admin", **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway of its own (settings overridden) over ``transport``; the client sends ``key``."""
    app = create_app(make_gateway_settings(**overrides), transport=transport)
    async with running_app(app), asgi_client(app) as client:
        if key is not None:
            client.headers.update(bearer(TEST_KEYS[key]))
        yield client


def echo_app() -> Starlette:
    """An upstream that answers 200 with what it received (method, path, query, headers, body)."""

    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "path": request.scope["path"],
                "query": request.url.query,
                "headers": dict(request.headers),
                "body": body.decode("utf-8", "replace"),
            }
        )

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse({"openapi": "3.1.0", "info": {"title": "echo", "version": "1"}})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ready"})

    return Starlette(
        routes=[
            Route("/openapi.json", openapi),
            Route("/ready", ready),
            Route("/{path:path}", echo, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )


def chromium_path() -> str | None:
    """Debian's chromium, installed with apt-get when missing and the suite runs as root (as
    on CI); None elsewhere (the browser tests are then skipped with the command to run)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
    if subprocess.run(install, check=False, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, timeout=900)
        subprocess.run(install, check=False, capture_output=True, timeout=900)
    return shutil.which("chromium")
