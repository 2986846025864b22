"""The access log's fast line is what structlog would write: same keys, order and redaction."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from loyalty_shared import logs


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A buffer for configure_logging; the logging configuration before comes back after."""
    config = structlog.get_config()
    context = structlog.contextvars.get_contextvars()
    handlers = logging.getLogger().handlers[:]
    monkeypatch.setattr(logs, "_fast_sink", logs._fast_sink)
    try:
        yield io.StringIO()
    finally:
        structlog.configure(**config)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**context)
        logging.getLogger().handlers[:] = handlers


def test_info_line_is_the_line_structlog_writes(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", captured)  # here: pytest sets its own for each phase
    logs.configure_logging("log-test", "INFO", json=True)
    fields: dict[str, object] = {"method": "GET", "status": 200, "email": "a@b.c", "caller": "x"}
    with structlog.contextvars.bound_contextvars(request_id="r-1", caller="ops", phone="1"):
        logs.info_line("request", fields)
        structlog.get_logger("loyalty.access").info("request", **fields)
    fast, reference = (json.loads(line) for line in captured.getvalue().splitlines())
    fast_time, reference_time = fast.pop("timestamp"), reference.pop("timestamp")
    assert fast == reference
    assert list(fast) == list(reference)  # the same key order
    assert fast["email"] == "***" and fast["phone"] == "***" and fast["caller"] == "x"
    assert fast["service"] == "log-test" and fast["request_id"] == "r-1"
    assert fast_time.endswith("Z") and len(fast_time) == len(reference_time)


def test_info_line_follows_the_level_and_the_console_format(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", captured)
    logs.configure_logging("log-test", "WARNING", json=True)
    logs.info_line("request", {"status": 200})
    assert captured.getvalue() == ""
    logs.configure_logging("log-test", "INFO", json=False)
    logs.info_line("request", {"status": 200})
    line = captured.getvalue()
    assert "request" in line and "status=200" in line and not line.startswith("{")


def test_personal_data_is_redacted_at_any_depth(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", captured)
    logs.configure_logging("log-test", "INFO", json=True)
    structlog.get_logger("t").warning(
        "event_failed",
        payload={"data": {"member": {"email": "a@b.c", "phone": "138"}, "points": 5}},
        rows=[{"name": "Ann", "id": 1}, ({"birthday": "2000-01-01"},)],
        status=200,
    )
    logs.info_line("request", {"body": {"attributes": {"address": "5 Main St"}}, "status": 200})
    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert first["payload"] == {"data": {"member": {"email": "***", "phone": "***"}, "points": 5}}
    assert first["rows"] == [{"name": "***", "id": 1}, [{"birthday": "***"}]]
    assert first["status"] == 200
    assert second["body"] == {"attributes": "***"}
    assert "a@b.c" not in captured.getvalue() and "Main St" not in captured.getvalue()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_lines_are_coloured_on_a_terminal_unless_no_color(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.delenv("NO_COLOR", raising=False)
    logs.configure_logging("log-test", "INFO", json=False)
    structlog.get_logger("t").info("coloured", email="a@b.c")
    line = terminal.getvalue()
    assert "\x1b[" in line and "coloured" in line and "a@b.c" not in line
    plain = _Terminal()
    monkeypatch.setattr(sys, "stdout", plain)
    monkeypatch.setenv("NO_COLOR", "1")
    logs.configure_logging("log-test", "INFO", json=False)
    structlog.get_logger("t").info("plain")
    assert "plain" in plain.getvalue() and "\x1b[" not in plain.getvalue()


def test_make_run_logs_json_unless_it_prints_to_a_terminal() -> None:
    from loyalty_shared.devstack.stack import log_json_from

    assert log_json_from({}, io.StringIO()) is True  # a pipe or a file: JSON lines
    assert log_json_from({}, _Terminal()) is False  # a person: coloured console lines
    assert log_json_from({"LOG_JSON": "true"}, _Terminal()) is True
    assert log_json_from({"LOG_JSON": "0"}, io.StringIO()) is False
