"""ASGI middleware of the gateway: request body size limit and security headers."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalty_shared.problems import PROBLEM_JSON, problem_type


async def _send_problem(
    send: Send, status: int, slug: str, title: str, detail: str, path: str
) -> None:
    body = json.dumps(
        {
            "type": problem_type(slug),
            "title": title,
            "status": status,
            "detail": detail,
            "instance": path,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_413(send: Send, limit: int, path: str) -> None:
    detail = f"The request body exceeds {limit} bytes"
    await _send_problem(send, 413, "body-too-large", "Request body too large", detail, path)


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length (None without one); ValueError unless it is one plain number."""
    values = {value.strip() for name, value in headers if name.lower() == b"content-length"}
    if not values:
        return None
    if len(values) > 1 or not all(v.isdigit() for v in values):
        raise ValueError(values)
    return int(values.pop())


class BodyLimitMiddleware:
    """413 for a body over the limit: at once from Content-Length, before any of the body is
    read; else while a chunked body arrives, as soon as it passes the limit (it is never
    read to its end). An unreadable Content-Length is a 400."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared = _declared_length(scope["headers"])
        except ValueError:
            detail = "Content-Length must be one non-negative number of bytes"
            title = "Invalid Content-Length"
            await _send_problem(send, 400, "invalid-content-length", title, detail, scope["path"])
            return
        if declared is not None and declared > self.max_bytes:
            await _send_413(send, self.max_bytes, scope["path"])
            return
        # Buffer the body (the gateway reads it whole anyway), counting what really arrives.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await _send_413(send, self.max_bytes, scope["path"])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
# Swagger UI, ReDoc and the AsyncAPI page: their scripts and styles come from the gateway.
_DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'"
)
_DOCS_PATHS = ("/docs", "/redoc", "/docs-assets/", "/asyncapi")
# The ops console: its own scripts and styles only (no inline script or style, no eval).
_CONSOLE_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, hsts_seconds: int = 0) -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if hsts_seconds:
            self.headers.append((b"strict-transport-security", f"max-age={hsts_seconds}".encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        docs = path.startswith(_DOCS_PATHS)
        csp = _DOCS_CSP if docs else _CONSOLE_CSP if path.startswith("/console") else _API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in self.headers:
                    if name not in present:
                        headers.append((name, value))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", csp))
                if not docs and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
