"""``loyalty-dev events tail``: the events on a topic as they come, on the real broker."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from typing import Any

import pytest

from loyalty_shared.devstack import events
from loyalty_shared.devstack.cli import main
from loyalty_shared.events import make_event


async def test_tail_prints_one_members_events_as_they_come(events_db: Any) -> None:
    db = events_db
    member, other = f"m-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    out = io.StringIO()
    ready = asyncio.Event()
    watching = asyncio.create_task(
        events.tail(
            db.topic,
            bootstrap=db.settings.kafka_bootstrap,
            member=member,
            out=out,
            limit=2,
            ready=ready.set,
        )
    )
    await asyncio.wait_for(ready.wait(), timeout=60)  # a hang guard, not a timing
    earned = make_event("loyalty/points", "loyalty.points.earned.v1", member, {"points": 10})
    theirs = make_event("loyalty/points", "loyalty.points.earned.v1", other, {"points": 99})
    spent = make_event("loyalty/points", "loyalty.points.redeemed.v1", member, {"points": 4})
    await db.produce(
        (member, earned.to_json_bytes()),
        (other, theirs.to_json_bytes()),
        (member, spent.to_json_bytes()),
    )
    assert await asyncio.wait_for(watching, timeout=60) == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["type"], e["subject"], e["data"]) for e in lines] == [
        ("loyalty.points.earned.v1", member, {"points": 10}),
        ("loyalty.points.redeemed.v1", member, {"points": 4}),
    ]
    assert lines[0]["id"] == earned.id and lines[0]["topic"] == db.topic
    assert lines[0]["key"] == member and isinstance(lines[0]["offset"], int)


def test_a_record_that_is_not_an_envelope_is_printed_as_it_is() -> None:
    record = events.describe("t", 0, 7, None, b"\xffnot json")
    assert record == {
        "topic": "t",
        "partition": 0,
        "offset": 7,
        "key": None,
        "value": "\ufffdnot json",
    }
    assert json.loads(events.render(record, pretty=True)) == record


def test_the_command_line_names_the_topic_and_options(capsys: Any) -> None:
    with pytest.raises(SystemExit) as done:
        main(["events", "tail", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert "topic" in shown and "--member" in shown and "--from-beginning" in shown


async def test_an_unknown_topic_is_named(events_db: Any) -> None:
    with pytest.raises(events.UnknownTopic, match="no topic 'nope"):
        await events.tail(
            f"nope-{uuid.uuid4().hex[:6]}",
            bootstrap=events_db.settings.kafka_bootstrap,
            out=io.StringIO(),
        )
