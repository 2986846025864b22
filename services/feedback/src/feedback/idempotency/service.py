"""``Idempotency-Key`` for writes: the same key and request replays the first answer; the same
key with a different request is a 409. The key is claimed in the write's own transaction, so a
failed write leaves it unused, and a concurrent duplicate waits on the row and then replays."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.idempotency.models import IdempotencyKey
from loyalty_shared.problems import Conflict

M = TypeVar("M", bound=BaseModel)


class IdempotencyKeyReused(Conflict):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key already used with a different request"


def fingerprint(request: Any) -> str:
    raw = json.dumps(request, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def once(
    session: AsyncSession,
    scope: str,
    key: str | None,
    request: Any,
    model: type[M],
    write: Callable[[], Awaitable[M]],
) -> M:
    if key is None:
        return await write()
    digest = fingerprint(request)
    claimed = (
        await session.execute(
            insert(IdempotencyKey)
            .values(scope=scope, key=key, request_hash=digest)
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.key)
        )
    ).scalar_one_or_none()
    if claimed is None:
        row = (
            await session.execute(
                select(IdempotencyKey.request_hash, IdempotencyKey.response).where(
                    IdempotencyKey.scope == scope, IdempotencyKey.key == key
                )
            )
        ).one()
        if row.request_hash != digest or row.response is None:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was first used with a different request",
                errors=[
                    {
                        "field": "header.Idempotency-Key",
                        "message": "reused with a different request",
                        "type": "conflict",
                    }
                ],
            )
        return model.model_validate(row.response)
    result = await write()
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(response=result.model_dump(mode="json"))
    )
    return result
