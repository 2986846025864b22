"""``Idempotency-Key`` for writes, one store for every service: the same caller, route and key
with the same request replay the first answer; with a different request they are a 409.

A key belongs to the caller that sent it (``loyalty_shared.caller``: the API key's name, or
the member of a member token) and to the kind of write (``scope``: a route): two callers
using the same key each get their own answer, and no caller can claim a key first to make
another caller's write fail. The key is claimed with ``INSERT ... ON CONFLICT DO NOTHING``
in the write's own transaction: a failed write leaves it unused (a retry runs again), and a
concurrent duplicate waits on the row until the first commits, then replays its answer.
A service keeps the table in its own database (``idempotency_table``, in its ``db.py``) and
prunes it on a schedule (``prune``).

Two ways to use it, one store: ``once`` for a service function that returns a model
(``IdempotencyKey``, the header and its caller, as the dependency), and
``IdempotencyGuard`` for an endpoint that answers with a response of its own status (the
replay says so in ``Idempotent-Replayed``); ``KeyGuards(table)`` gives the guard as an
optional or a required dependency. The fingerprint and the replay-or-409 rule are the
natural keys' one (``loyalty_shared.replays``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
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
from loyalty_shared.lean import json_response
from loyalty_shared.problems import Conflict, ProblemError
from loyalty_shared.replays import fingerprint, replay_or_conflict

__all__ = ["fingerprint"]  # the request's hash, as every keyed write makes it

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


class IdempotencyKeyRequired(ProblemError):
    slug = "idempotency-key-required"
    status = 428
    title = "Idempotency-Key header required"


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
    if row.response is None:  # claimed by a write that had no answer to store
        raise _reused(key)
    return replay_or_conflict(
        row.request_hash,
        digest,
        lambda: Stored(row.status_code, row.response),
        lambda: _reused(key),
    )


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


# --- the guard: an endpoint's whole answer, stored and replayed ----------------------------

REPLAYED_HEADER = "Idempotent-Replayed"

# For endpoints that read the header themselves (the checkout hot path): the same rules as
# ``KeyHeader``, documented the same way.
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


def payload_of(body: BaseModel | dict[str, Any] | None) -> Any:
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json")
    return body


class IdempotencyGuard:
    """What the dependency hands an endpoint: the key (if any), who sent it, where it went.

    ``route`` is the route's template (``/v1/members/{member_id}/redemptions``): with the
    method it is the key's scope; ``path`` (the concrete one) is part of the request.
    """

    def __init__(
        self,
        table: Table,
        key: str | None,
        method: str,
        path: str,
        *,
        route: str = "",
        caller: str = "",
    ) -> None:
        self.table = table
        self.key = key
        self.method = method
        self.path = path
        self.route = route or path
        self.caller = caller

    async def run(
        self,
        session: AsyncSession,
        body: BaseModel | dict[str, Any] | None,
        produce: Callable[[], Awaitable[tuple[BaseModel, int]]],
    ) -> Response:
        """Run ``produce`` once per key; later calls with the same key replay its answer."""
        if self.key is None:
            result, status = await produce()
            return json_response(result, status)
        scope = f"{self.method} {self.route}"
        digest = fingerprint([self.method, self.path, payload_of(body)])
        stored = await claim(session, self.table, scope, self.caller, self.key, digest)
        if stored is not None:
            return JSONResponse(
                stored.response,
                status_code=stored.status_code or 200,
                headers={REPLAYED_HEADER: "true"},
            )
        result, status = await produce()
        await record(
            session,
            self.table,
            scope,
            self.caller,
            self.key,
            result.model_dump(mode="json"),
            status,
        )
        return json_response(result, status)


class KeyGuards:
    """The ``Idempotency-Key`` header as a guard over one service's table: ``optional`` and
    ``required`` are FastAPI dependencies, ``from_request`` reads the header straight from
    the request (validated like ``KeyHeader``) for endpoints without dependencies.

    Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, which cost
    more than the rest of the dependency on every write.
    """

    def __init__(self, table: Table) -> None:
        self.table = table

    def _guard(self, request: Request, key: str | None) -> IdempotencyGuard:
        if key is None:  # nothing to store or replay: no need to build the request's URL
            return IdempotencyGuard(self.table, None, request.method, "")
        route = getattr(request.scope.get("route"), "path", None) or request.url.path
        return IdempotencyGuard(
            self.table,
            key,
            request.method,
            request.url.path,
            route=route,
            caller=caller_of(request.headers).owner,
        )

    def from_request(self, request: Request) -> IdempotencyGuard:
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
        return self._guard(request, key)

    async def optional(
        self, request: Request, idempotency_key: KeyHeader = None
    ) -> IdempotencyGuard:
        return self._guard(request, idempotency_key)

    async def required(
        self, request: Request, idempotency_key: KeyHeader = None
    ) -> IdempotencyGuard:
        if idempotency_key is None:
            raise IdempotencyKeyRequired(
                "This request needs an Idempotency-Key header so that a retry cannot spend twice",
                errors=[{"field": "header.Idempotency-Key", "message": "header is required"}],
            )
        return self._guard(request, idempotency_key)
