"""create_service_app(): the FastAPI app every service starts from."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from opentelemetry import _logs, metrics, trace
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty_shared.db import create_engine, create_sessionmaker
from loyalty_shared.docs import install_offline_docs
from loyalty_shared.gateway_trust import GatewayOnlyMiddleware, from_gateway
from loyalty_shared.hotpath.fast_lane import FastLane, fast_routes
from loyalty_shared.kafka import broker_reachable
from loyalty_shared.lean import add_schemas
from loyalty_shared.logs import configure_logging
from loyalty_shared.ops import ops_router
from loyalty_shared.problems import install_problem_handlers
from loyalty_shared.request_context import HttpMetrics, RequestContextMiddleware
from loyalty_shared.settings import CommonSettings

log = structlog.get_logger("loyalty.app")

QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})

ReadinessCheck = Callable[[FastAPI], Awaitable[tuple[bool, str]]]
LifespanHook = Callable[[FastAPI], Awaitable[None]]


async def _database_check(app: FastAPI) -> tuple[bool, str]:
    engine: AsyncEngine = app.state.engine
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return False, f"{type(exc).__name__}"
    return True, "ok"


async def _broker_check(app: FastAPI) -> tuple[bool, str]:
    settings: CommonSettings = app.state.settings
    ok = await broker_reachable(settings.kafka_bootstrap)
    return ok, "ok" if ok else f"cannot reach {settings.kafka_bootstrap}"


# Checks reported by /ready that do not take the process out of rotation: with the broker
# away, writes still commit their events to the outbox and the relay sends them later, so
# an API that answered 503 (and a Kubernetes readiness probe that pulled every pod) would
# refuse the orders the outbox exists to keep.
ADVISORY_CHECKS = frozenset({"broker"})


def health_router(checks: dict[str, ReadinessCheck]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health", summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/ready",
        summary="Readiness: the database is reachable (the broker is reported)",
        description="200 or 503 for anyone (probes send no credentials): 503 while the "
        "database is unreachable; an unreachable broker answers 200 with status `degraded` "
        "(events wait in the outbox). Which check failed and why only for the gateway's "
        "token (`checks` is null otherwise).",
        responses={503: {"description": "A dependency is not reachable"}},
    )
    async def ready(request: Request) -> JSONResponse:
        results: dict[str, Any] = {}
        for name, check in checks.items():
            ok, detail = await check(request.app)
            results[name] = {"ok": ok, "detail": detail}
        failed = {name for name, result in results.items() if not result["ok"]}
        ready = not failed - ADVISORY_CHECKS
        status = "not-ready" if not ready else "degraded" if failed else "ready"
        return JSONResponse(
            {"status": status, "checks": results if from_gateway(request) else None},
            status_code=200 if ready else 503,
        )

    return router


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _document_extra_schemas(app: FastAPI, models: tuple[type[BaseModel], ...]) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_schemas(generate(), models)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_UNSET_PROVIDERS = frozenset({"ProxyTracerProvider", "_ProxyMeterProvider", "ProxyLoggerProvider"})
TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def fastapi_telemetry() -> TelemetryConfig | None:
    """FastAPI's native OpenTelemetry: its defaults when there is somewhere to send it.

    That is when an OpenTelemetry provider (tracer, meter or logger) is set when the app is
    built, or ``FASTAPI_OTEL_AUTO_CONFIGURE=true`` asks FastAPI to set them up. Otherwise it
    is switched off with FastAPI's documented ``telemetry`` option: FastAPI would still ask
    the three providers on every request whether they are configured. (Our own request
    metrics are Prometheus's, in ``request_context``.)
    """
    if os.getenv("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true":
        return None
    providers = (trace.get_tracer_provider(), metrics.get_meter_provider())
    if any(
        type(p).__name__ not in _UNSET_PROVIDERS for p in (*providers, _logs.get_logger_provider())
    ):
        return None
    return TELEMETRY_OFF


def _lifespan(
    settings: CommonSettings,
    with_database: bool,
    on_startup: Sequence[LifespanHook],
    on_shutdown: Sequence[LifespanHook],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start-up and shutdown: the engine and sessionmaker (``with_database``) around the
    service's own hooks."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if with_database:
            app.state.engine = create_engine(settings)
            app.state.sessionmaker = create_sessionmaker(app.state.engine)
        for hook in on_startup:
            await hook(app)
        log.info("service_started", service=settings.service_name, environment=settings.environment)
        try:
            yield
        finally:
            for hook in on_shutdown:
                await hook(app)
            if with_database:
                await app.state.engine.dispose()

    return lifespan


def _fast_lane_routes(settings: CommonSettings, front_routers: Sequence[APIRouter]) -> list[Any]:
    """The front routes ``FastLane`` serves (none with ``hotpath_off`` naming it)."""
    if "fast_lane" in settings.hotpath_off:
        return []
    return fast_routes([route for front in front_routers for route in front.routes])


def create_service_app(
    settings: CommonSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    version: str = "1.0.0",
    with_database: bool = True,
    readiness: dict[str, ReadinessCheck] | None = None,
    on_startup: Sequence[LifespanHook] = (),
    on_shutdown: Sequence[LifespanHook] = (),
    openapi_tags: list[dict[str, Any]] | None = None,
    serve_openapi: bool = True,
    extra_schemas: Sequence[type[BaseModel]] = (),
    front_routers: Sequence[APIRouter] = (),
    probe_routers: Sequence[APIRouter] | None = None,
    gateway_only: bool = True,
) -> FastAPI:
    """``serve_openapi=False``: the caller serves /openapi.json itself (the gateway merges).

    ``gateway_only``: answer only calls carrying the gateway's ``X-Gateway-Token``
    (``gateway_trust.py``; /health, /ready, /metrics and the docs stay open). Raises
    ``RuntimeError`` outside dev and test when no gateway secret is configured. The gateway
    itself, which clients call, passes False.

    ``probe_routers``: serve /health, /ready and /metrics with these instead of the
    standard ones (the gateway, exposed to the world, shows less to callers without a key).

    ``extra_schemas``: models that endpoints document by reference rather than by a typed
    parameter (bodies read with ``loyalty_shared.lean.read_json``).
    ``front_routers``: the hottest routes; they sit on the app's own router, tried before
    the included routers (FastAPI matches an included router's routes through several
    layers, twice per request: ~8% of a checkout's CPU). Those whose endpoint is marked
    with ``loyalty_shared.hotpath.fast_lane`` are served by ``FastLane``.
    """
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=_lifespan(settings, with_database, on_startup, on_shutdown),
        openapi_tags=openapi_tags,
        openapi_url="/openapi.json" if serve_openapi else None,
        docs_url=None,
        redoc_url=None,
        telemetry=fastapi_telemetry(),
    )
    app.state.settings = settings
    # read before anything else: a service without its secret refuses to start
    gateway_secrets = settings.gateway_secrets() if gateway_only else None
    app.state.gateway_secrets = gateway_secrets
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    install_problem_handlers(app)
    if probe_routers is None:
        checks: dict[str, ReadinessCheck] = {}
        if with_database:
            checks["database"] = _database_check
            checks["broker"] = _broker_check
        checks.update(readiness or {})
        probe_routers = (health_router(checks), metrics_router(registry))
    # The service's routes first: FastAPI tries routers in order on every request, and the
    # business calls far outnumber the probes and scrapes.
    for front in front_routers:
        app.router.routes.extend(front.routes)  # prefix, tags, responses are already applied
    for router in (*routers, *((ops_router(),) if with_database else ()), *probe_routers):
        app.include_router(router)
    install_offline_docs(app, title)
    if extra_schemas:
        _document_extra_schemas(app, tuple(extra_schemas))
    hot = _fast_lane_routes(settings, front_routers)
    if hot:
        app.add_middleware(FastLane, routes=hot)  # inside the request context (added last)
    if gateway_secrets is not None:  # before every route, the fast lane's too
        app.add_middleware(GatewayOnlyMiddleware, secrets=gateway_secrets)
    app.add_middleware(
        RequestContextMiddleware, metrics=HttpMetrics(registry), quiet_paths=QUIET_PATHS
    )
    return app
