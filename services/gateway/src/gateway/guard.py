"""Admission of one request: authenticate, rate limit, find the policy rule, check scope and member.

The order is the same for every route: 401 (who are you?) before 429 (too
many) before 404 (no such route) before 403 (not for you). A member asking for
another member's data gets the same 403 whether or not that member exists: the
gateway decides before any service is asked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter

from gateway import policy
from gateway.auth import AuthenticationFailed, Authenticator, Identity
from gateway.ratelimit import Limiter
from gateway.routing import owner_of
from loyalty_shared.problems import forbidden_response, problem_response

# Identity headers the gateway sets for the services; never taken from a client.
IDENTITY_HEADERS = ("x-operator-id", "x-caller-scope", "x-member-id", "x-caller-name")


@dataclass(frozen=True, slots=True)
class RouteLabel:
    """Stands in for the Starlette route so metrics and logs use the policy template."""

    path: str


class Denied(Exception):
    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass
class Admitted:
    identity: Identity
    rule: policy.Rule
    params: dict[str, str]
    service: str | None
    rate_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def identity_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = [("x-caller-scope", self.identity.scope)]
        if self.identity.scope in ("ops", "admin"):
            headers.append(("x-operator-id", self.identity.name))
        elif self.identity.scope == "storefront":
            headers.append(("x-caller-name", self.identity.name))
        if self.identity.member_id is not None:
            headers.append(("x-member-id", self.identity.member_id))
        return headers


class GuardMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.denied = Counter(
            "gateway_denied_total",
            "Requests refused by the gateway before reaching a service",
            ["reason"],
            registry=registry,
        )


def _forbidden() -> Denied:
    # No instance and no id in the text: the answer is the same for every refused member
    # (and the one a service gives a member token for another member's resource).
    return Denied(forbidden_response())


def _not_found(method: str, path: str) -> Denied:
    return Denied(
        problem_response(
            404, "Not found", f"No route matches {method} {path}", slug="not-found", instance=path
        )
    )


def _valid_path(path: str) -> bool:
    return all(s not in ("", ".", "..") for s in path.split("/")[1:])


# "\u0000" in JSON text, unless its backslash is itself escaped ("\\u0000" is harmless).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


def _has_nul(path: str, query: bytes, body: bytes) -> bool:
    return (
        "\x00" in path
        or b"%00" in query
        or b"\x00" in query
        or b"\x00" in body
        or (b"\\u0000" in body.lower() and _JSON_NUL.search(body) is not None)
    )


def body_member_ids(body: bytes) -> list[Any] | None:
    """Every top-level ``member_id`` of a JSON object body (duplicates kept); None if not one."""
    try:
        # Objects become lists of (key, value) tuples, so duplicate keys stay visible.
        doc = json.loads(body, object_pairs_hook=lambda pairs: pairs)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, list) or not all(isinstance(p, tuple) for p in doc):
        return None
    return [value for key, value in doc if key == "member_id"]


class Guard:
    def __init__(
        self, authenticator: Authenticator, limiter: Limiter, metrics: GuardMetrics
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.metrics = metrics

    async def admit(self, request: Request) -> Admitted:
        method = request.method
        path: str = request.scope["path"]
        try:
            identity = self.authenticator.authenticate(request.headers.get("authorization"))
        except AuthenticationFailed as exc:
            self.metrics.denied.labels("unauthenticated").inc()
            raise Denied(
                problem_response(
                    401,
                    "Unauthorized",
                    exc.detail,
                    slug="unauthorized",
                    headers={"WWW-Authenticate": f'Bearer error="{exc.error}"'},
                )
            ) from exc
        structlog.contextvars.bind_contextvars(caller=identity.name, caller_scope=identity.scope)

        rate_headers: dict[str, str] = {}
        decision = await self.limiter.take(identity.rate_key, identity.scope)
        if decision is not None:
            rate_headers = decision.headers()
            if not decision.allowed:
                self.metrics.denied.labels("rate-limited").inc()
                raise Denied(
                    problem_response(
                        429,
                        "Too many requests",
                        f"The rate limit of this {identity.scope} caller is reached; retry "
                        f"after {decision.retry_after_seconds}s.",
                        slug="rate-limited",
                        headers=rate_headers,
                    )
                )

        if not _valid_path(path):
            self.metrics.denied.labels("no-route").inc()
            raise _not_found(method, path)
        found = policy.match(method, path)
        service = owner_of(path)
        if found is None:
            # Deny by default: a route the table does not list is never forwarded. The
            # answer says why, as the services would: another method (405) or no route (404).
            allowed = policy.methods_for(path)
            if allowed:
                self.metrics.denied.labels("method-not-in-policy").inc()
                raise Denied(
                    problem_response(
                        405,
                        "Method not allowed",
                        f"{method} is not allowed on {path}",
                        instance=path,
                        headers={"Allow": ", ".join(allowed)},
                    )
                )
            self.metrics.denied.labels("not-in-policy" if service else "no-route").inc()
            raise _not_found(method, path)
        if not found.rule.allows(identity.scope):
            self.metrics.denied.labels("scope").inc()
            raise _forbidden()

        body = await request.body()
        if _has_nul(path, request.scope.get("query_string", b""), body):
            self.metrics.denied.labels("nul-character").inc()
            raise Denied(
                problem_response(
                    400,
                    "NUL character refused",
                    "The path, the query string or the JSON body contains U+0000, "
                    "which no service can store.",
                    slug="nul-character",
                    instance=path.replace("\x00", ""),
                )
            )
        if identity.scope == "member" and (found.rule.member_self or found.rule.member_owned):
            self._check_member(identity, found, request, body, found.rule.member_self)
        request.scope["route"] = RouteLabel(found.rule.template)
        return Admitted(identity, found.rule, found.params, service, rate_headers, body)

    def _check_member(
        self,
        identity: Identity,
        found: policy.Match,
        request: Request,
        body: bytes,
        must_name: bool,
    ) -> None:
        """Every member id the request names must be the token's; on a ``member_self`` route
        (``must_name``) at least one must be named."""
        own = identity.member_id
        named: list[Any] = []
        if "member_id" in found.params:
            named.append(found.params["member_id"])
        named.extend(request.query_params.getlist("member_id"))
        if body:
            in_body = body_member_ids(body)
            if in_body is None and must_name and "member_id" not in found.params:
                # An unreadable body on a route whose only member id is in the body.
                self._deny_member()
            named.extend(in_body or [])
        if (must_name and not named) or any(value != own for value in named):
            self._deny_member()

    def _deny_member(self) -> None:
        self.metrics.denied.labels("other-member").inc()
        raise _forbidden()
