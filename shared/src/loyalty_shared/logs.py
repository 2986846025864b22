"""structlog JSON logging; every line carries the request id bound in the context."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime

import structlog

from loyalty_shared import jsontext

# Keys that must never reach a log line (personal data, credentials), at any depth.
_REDACTED_KEYS = frozenset(
    {
        "email",
        "phone",
        "birthday",
        "name",
        "address",
        "password",
        "token",
        "api_key",
        "authorization",
        "secret",
        "description",
        "note",
        "notes",
        "attributes",
    }
)
_MAX_DEPTH = 8  # deeper than any document we log; below it, values are replaced whole


def redact(value: object, depth: int = 0) -> object:
    """``value`` with every redacted key's value replaced by ``***``, in nested dicts and
    lists too. Returns the value itself when nothing in it needs redacting."""
    if depth > _MAX_DEPTH:
        return "***"
    if isinstance(value, dict):
        out = None
        for key, item in value.items():
            new = "***" if key in _REDACTED_KEYS else redact(item, depth + 1)
            if new is not item:
                out = dict(value) if out is None else out
                out[key] = new
        return value if out is None else out
    if isinstance(value, list | tuple):
        items = [redact(item, depth + 1) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _redact(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    redacted = redact(event_dict)
    assert isinstance(redacted, dict)
    return redacted


def _json_dumps(obj: object, **_: object) -> str:
    return jsontext.dumps(obj, lenient=True)


# Where info lines go once configured as JSON at INFO or below (``info_line``), else None.
_fast_sink: structlog.PrintLogger | None = None
# Once configured above INFO: info lines are dropped before anything is built.
_info_off = False


def info_line(event: str, fields: dict[str, object]) -> None:
    """One INFO line with the bound context, as structlog would write it, for the access log.

    Every request writes one, so this skips structlog's processor chain (the same keys, in
    the same order, redacted the same way). Before ``configure_logging`` chose JSON at INFO,
    and with console output, it is plain structlog.
    """
    if _info_off:
        return
    sink = _fast_sink
    if sink is None:
        structlog.get_logger("loyalty.access").info(event, **fields)
        return
    line = dict(fields)
    for key, value in structlog.contextvars.get_contextvars().items():
        line.setdefault(key, value)  # as merge_contextvars: the line's own keys win
    line = redact(line)  # type: ignore[assignment]
    line["level"] = "info"
    line["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    line["msg"] = event
    sink.msg(jsontext.dumps(line, lenient=True))  # structlog's writer and its lock


def colours(stream: object) -> bool:
    """Colour console lines on a terminal, unless NO_COLOR is set (https://no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and route stdlib logging (uvicorn, aiokafka) through it."""
    global _fast_sink, _info_off
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    _fast_sink = structlog.PrintLogger(sys.stdout) if json and numeric <= logging.INFO else None
    _info_off = numeric > logging.INFO
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_json_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=colours(sys.stdout))
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("msg") if json else _identity,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("msg") if json else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log is replaced by ours (with request id and latency).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def _identity(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    return event_dict
