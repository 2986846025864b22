"""``Idempotency-Key``: the same key and body replay the first answer; another body is a 409.

The key is claimed with ``INSERT ... ON CONFLICT DO NOTHING`` inside the request's
own transaction. A concurrent request with the same key waits on that row until
the first one commits (then it replays the stored answer) or rolls back (then it
runs itself). Only successful answers are stored: a request that failed wrote
nothing, so retrying it with the same key runs it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.lean import json_response
from points.errors import IdempotencyConflict
from points.idempotency.models import records

REPLAYED_HEADER = "Idempotent-Replayed"


def fingerprint(*parts: Any) -> str:
    """A stable hash of method, path and parsed body (blind to whitespace and key order)."""
    try:
        canonical = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits somewhere in a free-form field
        canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(canonical).hexdigest()


def payload_of(body: BaseModel | dict[str, Any] | None) -> Any:
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json")
    return body


class IdempotencyGuard:
    """What the dependency hands an endpoint: the key (if any) and where the request went."""

    def __init__(self, key: str | None, method: str, path: str) -> None:
        self.key = key
        self.method = method
        self.path = path

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
        request_hash = fingerprint(self.method, self.path, payload_of(body))
        claimed = (
            await session.execute(
                insert(records)
                .values(key=self.key, request_hash=request_hash, method=self.method, path=self.path)
                .on_conflict_do_nothing(index_elements=[records.c.key])
                .returning(records.c.key)
            )
        ).first()
        if claimed is None:
            stored = (
                await session.execute(
                    select(records.c.request_hash, records.c.status_code, records.c.response).where(
                        records.c.key == self.key
                    )
                )
            ).one()
            if stored.request_hash != request_hash:
                raise IdempotencyConflict(
                    "This Idempotency-Key was already used with a different request",
                    idempotency_key=self.key,
                )
            return JSONResponse(
                stored.response,
                status_code=stored.status_code,
                headers={REPLAYED_HEADER: "true"},
            )
        result, status = await produce()
        await session.execute(
            update(records)
            .where(records.c.key == self.key)
            .values(status_code=status, response=result.model_dump(mode="json"))
        )
        return json_response(result, status)


async def prune(session: AsyncSession, now: datetime, retention: timedelta) -> int:
    """Forget stored answers older than ``retention`` (a later retry then runs again)."""
    result = await session.execute(
        delete(records).where(records.c.created_at < now - retention).returning(records.c.key)
    )
    return len(result.all())
