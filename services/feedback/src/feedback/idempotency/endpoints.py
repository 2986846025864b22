"""The ``Idempotency-Key`` request header, as a dependency alias for write endpoints."""

from typing import Annotated

from fastapi import Header

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="same key + same request replays the first answer; a different request is 409",
    ),
]
