"""create_app(): the gateway every client talks to."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.middleware import Middleware

from gateway import asyncapi, console, endpoints, member_export, openapi, ops, probes, proxy
from gateway.auth import Authenticator, ConfigurationError
from gateway.fast_transport import FastTransport
from gateway.guard import Guard, GuardMetrics
from gateway.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from gateway.ratelimit_store import build_limiter
from gateway.settings import GatewaySettings
from gateway.upstream import UpstreamMetrics, Upstreams
from loyalty_shared.app import create_service_app
from loyalty_shared.request_context import RequestContextMiddleware


def _production_transport(settings: GatewaySettings) -> httpx.AsyncBaseTransport:
    plain_http = all(
        url.startswith("http://") for urls in settings.upstream_replicas().values() for url in urls
    )
    if settings.upstream_transport == "fast" and plain_http:
        return FastTransport(
            max_connections=settings.upstream_max_connections,
            connect_timeout=settings.upstream_connect_timeout_seconds,
        )
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=settings.upstream_max_connections,
        )
    )


def _is_request_context(middleware: Middleware) -> bool:
    cls: object = middleware.cls
    return cls is RequestContextMiddleware


def _arrange_middleware(app: FastAPI, settings: GatewaySettings) -> None:
    """Request context (id, access log, metrics) stays outermost so that every answer, a 413
    included, carries X-Request-ID and is logged; then security headers, CORS, the body
    limit, the service's own middleware, and the proxy's shortcut innermost."""
    context = [m for m in app.user_middleware if _is_request_context(m)]
    others = [m for m in app.user_middleware if not _is_request_context(m)]
    ours = [Middleware(SecurityHeadersMiddleware, hsts_seconds=settings.hsts_seconds)]
    if settings.cors_allow_origins:
        ours.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_allow_origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
                expose_headers=[
                    "X-Request-ID",
                    "Retry-After",
                    "RateLimit-Limit",
                    "RateLimit-Remaining",
                    "RateLimit-Reset",
                    "RateLimit-Policy",
                ],
                max_age=600,
            )
        )
    ours.append(Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes))
    own_routes = [
        r.path_regex
        for router in (endpoints.router, member_export.router)
        for r in router.routes
        if isinstance(r, APIRoute)
    ]
    shortcut = Middleware(proxy.ProxyShortcut, own_routes=own_routes)
    app.user_middleware[:] = [*context, *ours, *others, shortcut]


def create_app(
    settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """``transport`` lets tests route upstream calls to in-process apps.

    Raises ``ConfigurationError`` outside dev when no API key, member token secret or
    secret for the services (``GATEWAY_UPSTREAM_SECRET``) is configured: the process does
    not start.
    """
    settings = settings or GatewaySettings()
    authenticator = Authenticator(settings)
    try:
        settings.upstream_token()  # no secret for the services outside dev: no start
    except RuntimeError as exc:
        raise ConfigurationError(str(exc)) from exc

    async def open_client(app: FastAPI) -> None:
        pool = transport or _production_transport(settings)
        app.state.http = httpx.AsyncClient(
            transport=pool,
            timeout=httpx.Timeout(
                settings.upstream_timeout_seconds, connect=settings.upstream_connect_timeout_seconds
            ),
        )
        app.state.upstreams = Upstreams(settings, pool, app.state.upstream_metrics)
        app.state.upstreams.start_health_checks(app.state.http)
        app.state.openapi_cache = openapi.OpenAPICache()

    async def close_client(app: FastAPI) -> None:
        await asyncio.shield(app.state.upstreams.stop_health_checks())
        await asyncio.shield(app.state.http.aclose())
        await asyncio.shield(app.state.guard.limiter.aclose())

    app = create_service_app(
        settings,
        title="Loyalty platform gateway",
        description="Authentication, route policy, rate limits, routing, one OpenAPI.",
        routers=[
            openapi.router,
            asyncapi.router,
            endpoints.router,
            member_export.router,
            ops.router,
            console.router,
            proxy.router,
        ],
        with_database=False,
        probe_routers=[probes.router],
        on_startup=[open_client],
        on_shutdown=[close_client],
        serve_openapi=False,
        gateway_only=False,  # the gateway is what clients call
    )
    app.state.readiness_checks = probes.readiness_checks(settings)
    console.install(app)
    registry = app.state.metrics_registry
    app.state.authenticator = authenticator
    app.state.upstream_metrics = UpstreamMetrics(registry)
    app.state.guard = Guard(
        authenticator, build_limiter(settings, registry), GuardMetrics(registry)
    )

    _arrange_middleware(app, settings)
    return app
