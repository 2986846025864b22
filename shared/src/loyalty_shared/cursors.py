"""Keyset pagination's cursor: the last row's (time, key) position, opaque to the client.

A page ends with ``encode(at, key)`` of its last row; the next request's ``decode`` gives
the position to continue after (``(at, key) < position`` for a newest-first page). A
cursor this API did not make is a 422 ``invalid-cursor`` naming ``query.cursor``.
"""

from __future__ import annotations

import base64
from datetime import datetime

from loyalty_shared.problems import Unprocessable


class BadCursor(Unprocessable):
    slug = "invalid-cursor"
    title = "Invalid cursor"


def encode(at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{key}".encode()).decode()


def decode(cursor: str) -> tuple[datetime, str]:
    try:
        at, _, key = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), key
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(
            "cursor is not one this API returned",
            errors=[{"field": "query.cursor", "message": "malformed cursor"}],
        ) from exc
