"""``Idempotency-Key``: the same caller, route, key and body replay the first answer; another
body is a 409. The store is the platform's one (``loyalty_shared.idempotency``).

The key is claimed with ``INSERT ... ON CONFLICT DO NOTHING`` inside the request's
own transaction. A concurrent request with the same key waits on that row until
the first one commits (then it replays the stored answer) or rolls back (then it
runs itself). Only successful answers are stored: a request that failed wrote
nothing, so retrying it with the same key runs it again. A key is the caller's own
(``scope`` = method and route template, ``caller`` = ``Caller.owner``): another caller's
use of the same key is another key.
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
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared import idempotency
from loyalty_shared.lean import json_response
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
    """What the dependency hands an endpoint: the key (if any), who sent it, where it went.

    ``route`` is the route's template (``/v1/members/{member_id}/redemptions``): with the
    method it is the key's scope; ``path`` (the concrete one) is part of the request.
    """

    def __init__(
        self, key: str | None, method: str, path: str, *, route: str = "", caller: str = ""
    ) -> None:
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
        digest = fingerprint(self.method, self.path, payload_of(body))
        stored = await idempotency.claim(session, records, scope, self.caller, self.key, digest)
        if stored is not None:
            return JSONResponse(
                stored.response,
                status_code=stored.status_code or 200,
                headers={REPLAYED_HEADER: "true"},
            )
        result, status = await produce()
        await idempotency.record(
            session,
            records,
            scope,
            self.caller,
            self.key,
            result.model_dump(mode="json"),
            status,
        )
        return json_response(result, status)


async def prune(session: AsyncSession, now: datetime, retention: timedelta) -> int:
    """Forget stored answers older than ``retention`` (a later retry then runs again)."""
    result = await session.execute(
        delete(records).where(records.c.created_at < now - retention).returning(records.c.key)
    )
    return len(result.all())
