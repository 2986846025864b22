"""JSON text for database parameters and log lines: orjson, with the stdlib as the fallback."""

from __future__ import annotations

import json

import orjson


def dumps(value: object, *, lenient: bool = False) -> str:
    """orjson (several times faster than the stdlib on the hot paths); the stdlib encoder for
    what orjson refuses, e.g. an integer beyond 64 bits (which JSONB holds). ``lenient``:
    anything else unknown becomes its ``str()`` (log lines) instead of an error."""
    default = str if lenient else None
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=default)
