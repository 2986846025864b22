"""``Idempotency-Key`` for the feedback service's writes (``loyalty_shared.idempotency``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.idempotency.models import IdempotencyKey
from loyalty_shared import idempotency
from loyalty_shared.idempotency import IdempotencyKeyReused, RequestKey, fingerprint

__all__ = ["TABLE", "IdempotencyKeyReused", "fingerprint", "once"]

M = TypeVar("M", bound=BaseModel)

TABLE = IdempotencyKey


async def once(
    session: AsyncSession,
    scope: str,
    key: RequestKey,
    request: Any,
    model: type[M],
    write: Callable[[], Awaitable[M]],
) -> M:
    return await idempotency.once(session, TABLE, scope, key, request, model, write)
