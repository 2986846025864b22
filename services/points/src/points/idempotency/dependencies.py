"""The ``Idempotency-Key`` header as a FastAPI dependency (optional or required), with the
caller it belongs to (``loyalty_shared.caller``) and the route it was sent to.

Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, which cost
more than the rest of the dependency on every write.
"""

import re
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from loyalty_shared.caller import caller_of
from loyalty_shared.idempotency import (
    HEADER,
    KEY_DESCRIPTION,
    KEY_MAX_LENGTH,
    KEY_PATTERN,
    KeyHeader,
)
from points.errors import IdempotencyKeyRequired
from points.idempotency.service import IdempotencyGuard

# For endpoints that read the header themselves (the checkout hot path): the same rules,
# documented the same way.
HEADER_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": KEY_DESCRIPTION,
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": KEY_MAX_LENGTH,
        "pattern": KEY_PATTERN,
    },
}
_VALID_KEY = re.compile(KEY_PATTERN)


def _guard(request: Request, key: str | None) -> IdempotencyGuard:
    if key is None:  # nothing to store or replay: no need to build the request's URL
        return IdempotencyGuard(None, request.method, "")
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    return IdempotencyGuard(
        key,
        request.method,
        request.url.path,
        route=route,
        caller=caller_of(request.headers).owner,
    )


def guard_for(request: Request) -> IdempotencyGuard:
    """The optional key read straight from the request, validated like ``KeyHeader``."""
    key = request.headers.get(HEADER)
    if key is not None and (len(key) > KEY_MAX_LENGTH or not _VALID_KEY.match(key)):
        raise RequestValidationError(
            [
                {
                    "type": "string_pattern_mismatch",
                    "loc": ("header", HEADER),
                    "msg": "must be 1-255 printable ASCII characters without spaces",
                    "input": key,
                }
            ]
        )
    return _guard(request, key)


async def optional_key(request: Request, idempotency_key: KeyHeader = None) -> IdempotencyGuard:
    return _guard(request, idempotency_key)


async def required_key(request: Request, idempotency_key: KeyHeader = None) -> IdempotencyGuard:
    if idempotency_key is None:
        raise IdempotencyKeyRequired(
            "This request needs an Idempotency-Key header so that a retry cannot spend twice",
            errors=[{"field": "header.Idempotency-Key", "message": "header is required"}],
        )
    return _guard(request, idempotency_key)


Idempotency = Annotated[IdempotencyGuard, Depends(optional_key)]
RequiredIdempotency = Annotated[IdempotencyGuard, Depends(required_key)]
