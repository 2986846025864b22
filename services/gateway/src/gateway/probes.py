"""The gateway's ``/health``, ``/ready`` and ``/metrics``: what probes see, what operators see.

``/ready`` answers everyone 200 or 503, as orchestrators' readiness probes and load
balancers need (they send no credentials); which service is not ready, and why, is shown
only to an ops or admin API key: it maps the inside of the platform (service names,
circuit states, error kinds) for anyone who asks. ``/metrics`` (Prometheus) needs an ops or
admin key: it counts every route, caller scope and upstream failure. ``/health``
(liveness: the process answers) stays open to everyone.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from gateway.auth import AuthenticationFailed, Authenticator, Identity
from gateway.replicas import ReplicaPool
from gateway.settings import GatewaySettings
from loyalty_shared.app import ReadinessCheck
from loyalty_shared.problems import problem_response

OPERATOR_SCOPES = frozenset({"ops", "admin"})

router = APIRouter(tags=["health"])


class CheckOut(BaseModel):
    ok: bool
    detail: str


class ReadyOut(BaseModel):
    status: Literal["ready", "not-ready"]
    checks: dict[str, CheckOut] | None = Field(
        default=None,
        description="Each service's readiness and the state of its circuit breaker; only "
        "for an ops or admin API key (null for anyone else)",
    )


def upstream_check(name: str) -> ReadinessCheck:
    """A replica of the service answers its own ``/ready`` with 200 (its database and
    broker are up); replicas in the rotation are asked first, one at a time."""

    async def check(app: FastAPI) -> tuple[bool, str]:
        client: httpx.AsyncClient = app.state.http
        pool: ReplicaPool = app.state.upstreams.pools[name]
        now = pool.clock()
        detail = ""
        for replica in sorted(pool.replicas, key=lambda r: not r.admitted(now)):
            try:
                response = await client.get(replica.base_url + "/ready", timeout=2.0)
            except httpx.HTTPError as exc:
                detail = f"unreachable ({type(exc).__name__})"
                continue
            if response.status_code != 200:
                detail = f"not ready (HTTP {response.status_code})"
                continue
            state = app.state.upstreams.breakers[name].state
            return True, "ok" if state == "closed" else f"ok (circuit {state})"
        return False, detail

    return check


def _caller(request: Request) -> Identity | None:
    """Who sent the request; None without an ``Authorization`` header.

    Raises ``AuthenticationFailed`` for credentials that are not valid.
    """
    header = request.headers.get("authorization")
    if header is None:
        return None
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.authenticate(header)


def _unauthorized(exc: AuthenticationFailed) -> JSONResponse:
    return problem_response(
        401,
        "Unauthorized",
        exc.detail,
        slug="unauthorized",
        headers={"WWW-Authenticate": f'Bearer error="{exc.error}"'},
    )


_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_OPTIONAL_KEY: dict[str, Any] = {"security": [{}, {"apiKey": []}]}


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyOut,
    summary="Readiness: every service answers its own /ready",
    description="200 when every service is ready, else 503; for probes, no credentials "
    "needed. With an ops or admin API key the answer also names each service's state.",
    responses={
        401: {"description": "Credentials sent, but not valid", "content": _PROBLEM},
        503: {"model": ReadyOut, "description": "A service is not ready"},
    },
    openapi_extra=_OPTIONAL_KEY,
)
async def ready(request: Request) -> JSONResponse:
    try:
        caller = _caller(request)
    except AuthenticationFailed as exc:
        return _unauthorized(exc)
    checks: dict[str, ReadinessCheck] = request.app.state.readiness_checks
    results = await asyncio.gather(*(check(request.app) for check in checks.values()))
    all_ok = all(ok for ok, _ in results)
    out = ReadyOut(status="ready" if all_ok else "not-ready")
    if caller is not None and caller.scope in OPERATOR_SCOPES:
        out.checks = {
            name: CheckOut(ok=ok, detail=detail)
            for name, (ok, detail) in zip(checks, results, strict=True)
        }
    return JSONResponse(out.model_dump(mode="json"), status_code=200 if all_ok else 503)


@router.get("/metrics", summary="Prometheus metrics (ops or admin key)", include_in_schema=False)
async def metrics(request: Request) -> Response:
    try:
        caller = _caller(request)
        if caller is None:
            raise AuthenticationFailed(
                "Send `Authorization: Bearer <ops or admin API key>`", error="invalid_request"
            )
    except AuthenticationFailed as exc:
        return _unauthorized(exc)
    if caller.scope not in OPERATOR_SCOPES:
        return problem_response(
            403, "Forbidden", "Metrics are for ops and admin API keys.", slug="forbidden"
        )
    return Response(
        generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )


def readiness_checks(settings: GatewaySettings) -> dict[str, ReadinessCheck]:
    """What ``/ready`` asks (``app.state.readiness_checks``): every service's own /ready."""
    return {name: upstream_check(name) for name in settings.upstreams()}
