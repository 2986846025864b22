"""Request id (X-Request-ID taken or made), access log and Prometheus metrics: one middleware."""

from __future__ import annotations

import re
import time
from contextvars import ContextVar
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalty_shared.ids import uuid7_hex
from loyalty_shared.logs import info_line

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


def new_request_id() -> str:
    return uuid7_hex()


class HttpMetrics:
    """Per-route latency and status counts, in a registry of the app's own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request: its latency and its count (the labelled children made once each)."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            label = str(status)
            children = (
                self.latency.labels(method, route, label),
                self.requests.labels(method, route, label),
            )
            self._children[key] = children
        children[0].observe(seconds)
        children[1].inc()


class RequestContextMiddleware:
    """Binds the request id to the log context, returns it, logs and measures each request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, quiet_paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = (
            incoming if incoming and _VALID_REQUEST_ID.match(incoming) else new_request_id()
        )
        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        start = time.perf_counter()
        status = 500
        raw_id = request_id.encode("latin-1")

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                headers.append((b"x-request-id", raw_id))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.observe(method, template, status, elapsed)
            path = scope["path"]
            if path not in self.quiet_paths:
                info_line(
                    "request",
                    {
                        "method": method,
                        "path": path,
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)
