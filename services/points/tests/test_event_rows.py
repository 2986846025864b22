"""The checkout's outbox rows, built without pydantic, are the ones the CloudEvent path makes."""

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from loyalty_shared.events import make_event
from loyalty_shared.outbox import outbox_row as pydantic_outbox_row
from loyalty_shared.request_context import request_id_var
from loyalty_shared.topics import POINTS_EVENTS
from points import events

TIMES = [
    datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    datetime(2026, 3, 1, 12, 0, 5, 120, tzinfo=UTC),
    datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
    datetime(2025, 12, 31, 1, 2, 3, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
]
DATA = {
    "order_id": "o-1",
    "amount": "128.50",
    "items": [{"sku": "a", "category": None, "unit_price": "1.00", "quantity": 2}],
    "campaigns_applied": [],
    "first_order": True,
    "points_earned": 128,
    "breakdown": {"tier_multiplier": "1.5", "campaigns": [{"campaign_id": "c", "points": 3}]},
    "expires_at": None,
}


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("request_id", [None, "req-42"])
@pytest.mark.parametrize("type_", [events.ORDER_RECORDED, events.POINTS_EARNED])
def test_direct_row_equals_the_pydantic_row(
    time: datetime, request_id: str | None, type_: str
) -> None:
    token = request_id_var.set(request_id)
    try:
        row = events.outbox_row(type_, "m-1", DATA, time=time)
        expected = pydantic_outbox_row(
            POINTS_EVENTS,
            make_event(events.SOURCE, type_, "m-1", DATA, time=time, event_id=row["event_id"]),
        )
    finally:
        request_id_var.reset(token)
    assert row == expected
    assert orjson.dumps(row) == orjson.dumps(expected)
    assert row["payload"]["id"] == row["event_id"]


def test_event_ids_are_fresh_per_row() -> None:
    first = events.outbox_row(events.ORDER_RECORDED, "m-1", {}, time=TIMES[0])
    second = events.outbox_row(events.ORDER_RECORDED, "m-1", {}, time=TIMES[0])
    assert first["event_id"] != second["event_id"]


def test_a_time_without_offset_is_refused_as_the_envelope_does() -> None:
    with pytest.raises(ValueError, match="offset"):
        events.outbox_row(events.ORDER_RECORDED, "m-1", {}, time=datetime(2026, 3, 1, 12, 0))
