"""``Idempotency-Key`` for writes, one store for every service: the same caller, route and key
with the same request replay the first answer; with a different request they are a 409.

A key belongs to the caller that sent it (``loyalty_shared.caller``: the API key's name, or
the member of a member token) and to the kind of write (``scope``: a route): two callers
using the same key each get their own answer, and no caller can claim a key first to make
another caller's write fail. The key is claimed with ``INSERT ... ON CONFLICT DO NOTHING``
in the write's own transaction: a failed write leaves it unused (a retry runs again), and a
concurrent duplicate waits on the row until the first commits, then replays its answer.
A service keeps the table in its own database (``idempotency_table``) and prunes it on a
schedule (``prune``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from pydantic import BaseModel
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.caller import caller_of, member_owner
from loyalty_shared.problems import Conflict

M = TypeVar("M", bound=BaseModel)

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]+$"
KEY_MAX_LENGTH = 255
KEY_DESCRIPTION = (
    "Client-chosen key, the caller's own: a retry with the same key and body replays the "
    "first answer; the same key with another body is a 409"
)

KeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=KEY_MAX_LENGTH,
        pattern=KEY_PATTERN,
        description=KEY_DESCRIPTION,
    ),
]


@dataclass(frozen=True, slots=True)
class RequestKey:
    """A write's ``Idempotency-Key`` (None: not sent) and who sent it (``Caller.owner``)."""

    value: str | None
    caller: str


async def request_key(request: Request, idempotency_key: KeyHeader = None) -> RequestKey:
    return RequestKey(idempotency_key, caller_of(request.headers).owner)


# The dependency for write endpoints: the header and its caller, always together.
IdempotencyKey = Annotated[RequestKey, Depends(request_key)]


class IdempotencyKeyReused(Conflict):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key already used with a different request"


def idempotency_table(metadata: MetaData, name: str = "idempotency_keys") -> Table:
    return Table(
        name,
        metadata,
        Column("scope", String(128), primary_key=True),  # the kind of write (a route)
        Column("caller", String(255), primary_key=True),  # Caller.owner ("" = internal)
        Column("key", String(KEY_MAX_LENGTH), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer),
        Column("response", JSONB),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index(f"ix_{name}_created_at", "created_at"),  # for pruning
    )


def fingerprint(request: Any) -> str:
    """A stable hash of the request (blind to key order and whitespace)."""
    raw = json.dumps(request, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Stored:
    """The first answer given under a key: replay it."""

    status_code: int | None
    response: Any


def _reused(key: str) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(
        f"Idempotency-Key {key!r} was first used with a different request",
        idempotency_key=key,
        errors=[
            {
                "field": "header.Idempotency-Key",
                "message": "reused with a different request",
                "type": "conflict",
            }
        ],
    )


def _this(table: Table, scope: str, caller: str, key: str) -> Any:
    return (table.c.scope == scope) & (table.c.caller == caller) & (table.c.key == key)


async def claim(
    session: AsyncSession, table: Table, scope: str, caller: str, key: str, digest: str
) -> Stored | None:
    """Claim the caller's key for this request: None if claimed now (run the write, then
    ``record`` its answer), else the stored first answer; 409 for another request."""
    claimed = (
        await session.execute(
            insert(table)
            .values(scope=scope, caller=caller, key=key, request_hash=digest)
            .on_conflict_do_nothing()
            .returning(table.c.key)
        )
    ).first()
    if claimed is not None:
        return None
    row = (
        await session.execute(
            select(table.c.request_hash, table.c.status_code, table.c.response).where(
                _this(table, scope, caller, key)
            )
        )
    ).one()
    if row.request_hash != digest or row.response is None:
        raise _reused(key)
    return Stored(row.status_code, row.response)


async def record(
    session: AsyncSession,
    table: Table,
    scope: str,
    caller: str,
    key: str,
    response: Any,
    status_code: int | None = None,
) -> None:
    """Store the answer of the write that claimed the key (in the same transaction)."""
    await session.execute(
        update(table)
        .where(_this(table, scope, caller, key))
        .values(response=response, status_code=status_code)
    )


async def once(
    session: AsyncSession,
    table: Table,
    scope: str,
    key: RequestKey,
    request: Any,
    model: type[M],
    write: Callable[[], Awaitable[M]],
) -> M:
    """Run ``write`` once per (scope, caller, key); later calls with the same request replay it."""
    if key.value is None:
        return await write()
    stored = await claim(session, table, scope, key.caller, key.value, fingerprint(request))
    if stored is not None:
        return model.model_validate(stored.response)
    result = await write()
    await record(session, table, scope, key.caller, key.value, result.model_dump(mode="json"))
    return result


async def prune(session: AsyncSession, table: Table, before: datetime) -> int:
    """Forget keys claimed before ``before`` (a later retry with one of them runs again)."""
    result = await session.execute(
        delete(table).where(table.c.created_at < before).returning(table.c.key)
    )
    return len(result.all())


async def forget_member(session: AsyncSession, table: Table, member_id: str) -> int:
    """Erasure: drop the keys a member's token claimed and the answers that name the member."""
    result = await session.execute(
        delete(table)
        .where(
            or_(
                table.c.caller == member_owner(member_id),
                table.c.response["member_id"].astext == member_id,
            )
        )
        .returning(table.c.key)
    )
    return len(result.all())
