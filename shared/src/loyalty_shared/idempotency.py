"""``Idempotency-Key`` for writes, for any service: the same key and request replay the first
answer; the same key with a different request is a 409.

The key is claimed with ``INSERT ... ON CONFLICT DO NOTHING`` in the write's own transaction:
a failed write leaves it unused (a retry runs again), and a concurrent duplicate waits on the
row until the first commits, then replays its answer. Keys are scoped (one scope per kind of
write), so a key reused on another endpoint is its own key. A service keeps the table in its
own database (``idempotency_table``) and prunes it on a schedule (``prune``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Header
from pydantic import BaseModel
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import Conflict

M = TypeVar("M", bound=BaseModel)

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="same key + same request replays the first answer; a different request is 409",
    ),
]


class IdempotencyKeyReused(Conflict):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key already used with a different request"


def idempotency_table(metadata: MetaData, name: str = "idempotency_keys") -> Table:
    return Table(
        name,
        metadata,
        Column("scope", String(64), primary_key=True),
        Column("key", String(200), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("response", JSONB),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index(f"ix_{name}_created_at", "created_at"),  # for pruning
    )


def fingerprint(request: Any) -> str:
    """A stable hash of the request (blind to key order and whitespace)."""
    raw = json.dumps(request, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def once(
    session: AsyncSession,
    table: Table,
    scope: str,
    key: str | None,
    request: Any,
    model: type[M],
    write: Callable[[], Awaitable[M]],
) -> M:
    """Run ``write`` once per (scope, key); later calls with the same request replay it."""
    if key is None:
        return await write()
    digest = fingerprint(request)
    claimed = (
        await session.execute(
            insert(table)
            .values(scope=scope, key=key, request_hash=digest)
            .on_conflict_do_nothing()
            .returning(table.c.key)
        )
    ).scalar_one_or_none()
    if claimed is None:
        row = (
            await session.execute(
                select(table.c.request_hash, table.c.response).where(
                    table.c.scope == scope, table.c.key == key
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
        update(table)
        .where(table.c.scope == scope, table.c.key == key)
        .values(response=result.model_dump(mode="json"))
    )
    return result


async def prune(session: AsyncSession, table: Table, before: datetime) -> int:
    """Forget keys claimed before ``before`` (a later retry with one of them runs again)."""
    result = await session.execute(
        delete(table).where(table.c.created_at < before).returning(table.c.key)
    )
    return len(result.all())
