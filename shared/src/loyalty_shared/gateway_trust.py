"""A service answers only the gateway: every call must carry ``X-Gateway-Token``.

The gateway authenticates clients and tells the services who is calling in headers it
sets itself (``x-caller-scope``, ``x-operator-id``, ``x-member-id``, ...; ``caller.py``).
Those headers are worth nothing if anyone who reaches a service's port can send them, so
each call from the gateway also carries a shared secret (``GATEWAY_UPSTREAM_SECRET`` at the
gateway, ``<SERVICE>_GATEWAY_SECRET`` at the service), compared in constant time. A call
without it, or with another value, is a 401 problem before any route runs.

Open without the secret, for orchestrators and operators: ``/health`` (liveness),
``/ready`` (readiness: the status only; the checks' detail needs the secret), ``/metrics``
(Prometheus scrapes it from inside the platform) and the API description (``/openapi.json``,
``/docs``, ``/redoc`` and their assets: the same routes the gateway publishes anyway).

Why a shared secret rather than a signed short-lived token or mTLS: docs/security.md.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from loyalty_shared.problems import problem_response

TOKEN_HEADER = "x-gateway-token"  # noqa: S105 (a header name)
_TOKEN_HEADER = TOKEN_HEADER.encode()
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/redoc"})
OPEN_PREFIXES = ("/docs-assets/",)


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def token_of(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == _TOKEN_HEADER:
            return bytes(value)
    return None


def accepted(token: bytes | None, secrets: tuple[bytes, ...]) -> bool:
    """Constant time for each secret; every secret is compared (no early exit)."""
    if token is None:
        return False
    matches = [hmac.compare_digest(token, secret) for secret in secrets]
    return any(matches)


def from_gateway(request: Request) -> bool:
    """The request carries the gateway's token (or the app trusts every caller)."""
    secrets: tuple[bytes, ...] | None = getattr(request.app.state, "gateway_secrets", None)
    return secrets is None or accepted(token_of(request.scope), secrets)


class GatewayOnlyMiddleware:
    """401 ``gateway-token-required`` for any call but the open paths without the token."""

    def __init__(self, app: ASGIApp, secrets: tuple[bytes, ...]) -> None:
        if not secrets:
            raise ValueError("at least one gateway secret is needed")
        self.app = app
        self.secrets = secrets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or is_open(scope["path"])
            or accepted(token_of(scope), self.secrets)
        ):
            await self.app(scope, receive, send)
            return
        response = problem_response(
            401,
            "Unauthorized",
            "This service answers only the platform's gateway: call it through the gateway.",
            slug="gateway-token-required",
            headers={"WWW-Authenticate": 'GatewayToken realm="loyalty-services"'},
        )
        await response(scope, receive, send)
