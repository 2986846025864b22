"""Replays of keyed writes: fingerprint the request, then replay the first answer or 409.

Every write with a natural key (an order id, a refund id, an interaction's event id, a
campaign id, an ``Idempotency-Key``) stores the fingerprint of the request that first used
the key. The same key again with the same request gets the first answer back; with another
request it is a 409 (TigerBeetle's ``exists_with_different_fields``). This module is the one
place that says so: ``fingerprint`` the request, ``replay_or_conflict`` against what the key
stored, or ``stored_answer`` for a table that keeps ``request_hash`` and ``response`` columns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def fingerprint(request: Any) -> str:
    """A stable hash of the request: JSON with sorted keys and no white space, so blind to
    key order and formatting; values JSON has no type for (datetimes, decimals) as ``str``."""
    try:
        canonical = orjson.dumps(request, default=str, option=_OPTIONS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, a key that is not a string
        canonical = json.dumps(
            request, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False
        ).encode()
    return hashlib.sha256(canonical).hexdigest()


def replay_or_conflict(
    stored_hash: str | None,
    digest: str,
    replay: Callable[[], T],
    conflict: Callable[[], Exception],
) -> T:
    """The first answer (``replay()``) if the key's stored fingerprint is this request's;
    else raise ``conflict()`` (a 409 problem naming the key)."""
    if stored_hash != digest:
        raise conflict()
    return replay()


async def stored_answer(
    session: AsyncSession,
    key: ColumnElement[bool],
    table: Table,
    digest: str,
    model: type[M],
    conflict: Callable[[], Exception],
) -> M | None:
    """The answer stored in ``table`` (``request_hash``, ``response``) under ``key``, if this
    request is the one that first used it; None if the key is new; ``conflict()`` otherwise."""
    row = (await session.execute(select(table.c.request_hash, table.c.response).where(key))).first()
    if row is None:
        return None
    return replay_or_conflict(
        row.request_hash, digest, lambda: model.model_validate(row.response), conflict
    )
