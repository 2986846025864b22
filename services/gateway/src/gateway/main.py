"""create_app(): the gateway every client talks to."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from gateway import openapi, proxy
from gateway.settings import GatewaySettings
from loyalty_shared.app import ReadinessCheck, create_service_app


def _upstream_check(name: str) -> ReadinessCheck:
    async def check(app: FastAPI) -> tuple[bool, str]:
        settings: GatewaySettings = app.state.settings
        client: httpx.AsyncClient = app.state.http
        try:
            response = await client.get(settings.upstreams()[name] + "/ready", timeout=2.0)
        except httpx.HTTPError as exc:
            return False, f"unreachable ({type(exc).__name__})"
        if response.status_code != 200:
            return False, f"not ready (HTTP {response.status_code})"
        return True, "ok"

    return check


def create_app(
    settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """``transport`` lets tests route upstream calls to in-process apps."""
    settings = settings or GatewaySettings()

    async def open_client(app: FastAPI) -> None:
        app.state.http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(
                settings.upstream_timeout_seconds, connect=settings.upstream_connect_timeout_seconds
            ),
            limits=httpx.Limits(
                max_connections=settings.upstream_max_connections,
                max_keepalive_connections=settings.upstream_max_connections,
            ),
        )
        app.state.openapi_cache = openapi.OpenAPICache()

    async def close_client(app: FastAPI) -> None:
        await asyncio.shield(app.state.http.aclose())

    app = create_service_app(
        settings,
        title="Loyalty platform gateway",
        description="Routing, request ids, one OpenAPI over every service.",
        routers=[openapi.router, proxy.router],
        with_database=False,
        readiness={name: _upstream_check(name) for name in settings.upstreams()},
        on_startup=[open_client],
        on_shutdown=[close_client],
        serve_openapi=False,
    )
    return app
