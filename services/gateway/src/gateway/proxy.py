"""Forwarding a request to the service that owns its path, over one pooled httpx client."""

from __future__ import annotations

import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.routing import owner_of
from gateway.settings import GatewaySettings
from loyalty_shared.problems import problem_response
from loyalty_shared.request_context import current_request_id

log = structlog.get_logger("gateway.proxy")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_DROP_FROM_RESPONSE = HOP_BY_HOP | {"content-encoding", "x-request-id", "server", "date"}

router = APIRouter()

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@router.api_route("/v1/{path:path}", methods=METHODS, include_in_schema=False)
async def forward(request: Request) -> Response:
    path = request.url.path
    service = owner_of(path)
    if service is None:
        return problem_response(
            404, "Not found", f"No route matches {request.method} {path}", instance=path
        )
    settings: GatewaySettings = request.app.state.settings
    client: httpx.AsyncClient = request.app.state.http
    base = settings.upstreams()[service]
    url = base + path + (f"?{request.url.query}" if request.url.query else "")
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
    headers.append(("x-request-id", current_request_id() or ""))
    if request.client:
        headers.append(("x-forwarded-for", request.client.host))
    body = await request.body()
    try:
        upstream = await client.request(request.method, url, content=body, headers=headers)
    except httpx.TimeoutException:
        log.warning("upstream_timeout", service=service, path=path)
        return problem_response(
            504,
            "Upstream timeout",
            f"The {service} service did not answer in time",
            slug="upstream-timeout",
            instance=path,
            service=service,
        )
    except httpx.TransportError as exc:
        log.warning("upstream_unavailable", service=service, path=path, error=type(exc).__name__)
        return problem_response(
            503,
            "Service unavailable",
            f"The {service} service is not reachable; try again shortly",
            slug="upstream-unavailable",
            instance=path,
            service=service,
            headers={"Retry-After": "5"},
        )
    out_headers = {
        k: v for k, v in upstream.headers.items() if k.lower() not in _DROP_FROM_RESPONSE
    }
    return Response(content=upstream.content, status_code=upstream.status_code, headers=out_headers)
