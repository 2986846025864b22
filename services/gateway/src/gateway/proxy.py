"""Forwarding an admitted request to the service that owns its path, over one pooled client."""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.guard import IDENTITY_HEADERS, Admitted, Denied, Guard
from gateway.routing import owner_of
from gateway.upstream import UpstreamError, Upstreams
from loyalty_shared.problems import problem_response
from loyalty_shared.request_context import current_request_id

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
# Never passed on to a service: credentials stay at the gateway, identity is set by it (a
# client's X-Gateway-Token too: the gateway adds its own to every call).
_DROP_FROM_REQUEST = frozenset(
    name.encode()
    for name in HOP_BY_HOP
    | {"authorization", "cookie", "x-request-id", "x-gateway-token", *IDENTITY_HEADERS}
)
_DROP_FROM_RESPONSE = frozenset(
    name.encode() for name in HOP_BY_HOP | {"content-encoding", "x-request-id", "server", "date"}
)

router = APIRouter()

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def upstream_problem(exc: UpstreamError, path: str) -> JSONResponse:
    if exc.kind == "bad-request":
        return problem_response(
            400,
            "Bad request",
            "The request cannot be forwarded as written (path or headers)",
            slug="bad-request",
            instance=path,
        )
    if exc.kind == "timeout":
        return problem_response(
            504,
            "Upstream timeout",
            f"The {exc.service} service did not answer in time",
            slug="upstream-timeout",
            instance=path,
            service=exc.service,
        )
    if exc.kind == "circuit-open":
        return problem_response(
            503,
            "Service unavailable",
            f"The {exc.service} service is failing; calls are paused for a few seconds",
            slug="circuit-open",
            instance=path,
            service=exc.service,
            headers={"Retry-After": str(exc.retry_after)},
        )
    return problem_response(
        503,
        "Service unavailable",
        f"The {exc.service} service is not reachable; try again shortly",
        slug="upstream-unavailable",
        instance=path,
        service=exc.service,
        headers={"Retry-After": str(exc.retry_after)},
    )


def forward_headers(request: Request, admitted: Admitted) -> list[tuple[bytes, bytes]]:
    """The client's headers as raw bytes (any latin-1 value passes through unchanged)."""
    headers = [(k, v) for k, v in request.headers.raw if k.lower() not in _DROP_FROM_REQUEST]
    headers.append((b"x-request-id", (current_request_id() or "").encode("latin-1")))
    headers.extend((k.encode(), v.encode()) for k, v in admitted.identity_headers())
    if request.client:
        headers.append((b"x-forwarded-for", request.client.host.encode("latin-1")))
    return headers


class ProxiedResponse(Response):
    """A service's answer passed on as it came: raw headers, no rendering or header parsing."""

    def __init__(self, status_code: int, raw_headers: list[tuple[bytes, bytes]], body: bytes):
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


def with_headers(response: Response, extra: dict[str, str]) -> Response:
    for name, value in extra.items():
        response.headers[name] = value
    return response


@router.api_route("/v1/{path:path}", methods=METHODS, include_in_schema=False)
async def forward(request: Request) -> Response:
    guard: Guard = request.app.state.guard
    try:
        admitted = await guard.admit(request)
    except Denied as denied:
        return denied.response
    path: str = request.scope["path"]
    if admitted.service is None:  # the policy lists it, but no service holds it
        return problem_response(
            404, "Not found", f"No service holds {path}", slug="not-found", instance=path
        )
    upstreams: Upstreams = request.app.state.upstreams
    query = request.scope.get("query_string", b"").decode("latin-1")
    # The path as the client encoded it: the service decodes it exactly as the gateway did
    # (a "%3F" stays part of the member id instead of starting a query string).
    raw_path: bytes = request.scope.get("raw_path") or path.encode()
    try:
        upstream = await upstreams.request_raw(
            admitted.service,
            request.method,
            raw_path.decode("latin-1") + (f"?{query}" if query else ""),
            forward_headers(request, admitted),
            content=admitted.body,
            timeout_seconds=request.app.state.settings.route_timeout(
                admitted.rule.method, admitted.rule.template
            ),
        )
    except UpstreamError as exc:
        return with_headers(upstream_problem(exc, path), admitted.rate_headers)
    status = upstream.status_code
    body = upstream.content
    headers = [(k, v) for k, v in upstream.headers if k.lower() not in _DROP_FROM_RESPONSE]
    if status >= 200 and status not in (204, 304):
        headers.append((b"content-length", str(len(body)).encode()))
    headers.extend((k.lower().encode(), v.encode()) for k, v in admitted.rate_headers.items())
    return ProxiedResponse(status, headers, body)


class ProxyShortcut:
    """Innermost ASGI middleware: a call for a service's path goes straight to ``forward``.

    The router, FastAPI's endpoint machinery (dependency solving, the exception middleware,
    the exit stack) are skipped on the hot path. The gateway's own routes and the paths no
    service owns still go through FastAPI (the catch-all route answers those with 404/405).
    """

    def __init__(self, app: ASGIApp, own_routes: Sequence[re.Pattern[str]]) -> None:
        self.app = app
        self.own_routes = tuple(own_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"] if scope["type"] == "http" else ""
        if (
            path.startswith("/v1/")
            and owner_of(path) is not None
            and not any(route.match(path) for route in self.own_routes)
        ):
            response = await forward(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
