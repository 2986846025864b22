"""The ``Idempotency-Key`` header as a FastAPI dependency (optional or required)."""

from typing import Annotated

from fastapi import Depends, Header, Request

from points.errors import IdempotencyKeyRequired
from points.idempotency.service import IdempotencyGuard

KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Client-chosen key: a retry with the same key and body replays the first "
        "answer; the same key with another body is a 409",
    ),
]


def optional_key(request: Request, idempotency_key: KeyHeader = None) -> IdempotencyGuard:
    return IdempotencyGuard(idempotency_key, request.method, request.url.path)


def required_key(request: Request, idempotency_key: KeyHeader = None) -> IdempotencyGuard:
    if idempotency_key is None:
        raise IdempotencyKeyRequired(
            "This request needs an Idempotency-Key header so that a retry cannot spend twice",
            errors=[{"field": "header.Idempotency-Key", "message": "header is required"}],
        )
    return IdempotencyGuard(idempotency_key, request.method, request.url.path)


Idempotency = Annotated[IdempotencyGuard, Depends(optional_key)]
RequiredIdempotency = Annotated[IdempotencyGuard, Depends(required_key)]
