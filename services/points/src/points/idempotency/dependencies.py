"""The ``Idempotency-Key`` header as a FastAPI dependency (optional or required).

Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, which cost
more than the rest of the dependency on every write.
"""

import re
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError

from points.errors import IdempotencyKeyRequired
from points.idempotency.service import IdempotencyGuard

HEADER = "Idempotency-Key"
_PATTERN = r"^[\x21-\x7e]+$"
_DESCRIPTION = (
    "Client-chosen key: a retry with the same key and body replays the first answer; the "
    "same key with another body is a 409"
)

KeyHeader = Annotated[
    str | None,
    Header(alias=HEADER, min_length=1, max_length=255, pattern=_PATTERN, description=_DESCRIPTION),
]

# For endpoints that read the header themselves (the checkout hot path): the same rules,
# documented the same way.
HEADER_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": _DESCRIPTION,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _PATTERN},
}
_VALID_KEY = re.compile(_PATTERN)


def guard_for(request: Request) -> IdempotencyGuard:
    """The optional key read straight from the request, validated like ``KeyHeader``."""
    key = request.headers.get(HEADER)
    if key is not None and (len(key) > 255 or not _VALID_KEY.match(key)):
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
    if key is None:  # nothing to store or replay: no need to build the request's URL
        return IdempotencyGuard(None, request.method, "")
    return IdempotencyGuard(key, request.method, request.url.path)


async def optional_key(request: Request, idempotency_key: KeyHeader = None) -> IdempotencyGuard:
    return IdempotencyGuard(idempotency_key, request.method, request.url.path)


async def required_key(request: Request, idempotency_key: KeyHeader = None) -> IdempotencyGuard:
    if idempotency_key is None:
        raise IdempotencyKeyRequired(
            "This request needs an Idempotency-Key header so that a retry cannot spend twice",
            errors=[{"field": "header.Idempotency-Key", "message": "header is required"}],
        )
    return IdempotencyGuard(idempotency_key, request.method, request.url.path)


Idempotency = Annotated[IdempotencyGuard, Depends(optional_key)]
RequiredIdempotency = Annotated[IdempotencyGuard, Depends(required_key)]
