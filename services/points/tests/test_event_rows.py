"""The checkout's outbox rows, built without pydantic, are the ones the model path makes.

``points.events.outbox_row`` writes the checkout's ``order.recorded`` and ``points.earned``
by hand (the hot path). Two proofs that it writes what the contract models write: for given
payloads, the whole row and its bytes equal the row the model path makes; and for real
checkouts (items, coupons, discounts, pending points, an upgrade), every payload in the
outbox is exactly what its model dumps, byte for byte, field for field and in order.
"""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest

from loyalty_shared.contracts import CONTRACTS
from loyalty_shared.outbox import outbox_row as pydantic_outbox_row
from loyalty_shared.request_context import request_id_var
from loyalty_shared.topics import POINTS_EVENTS
from points import events
from points.settings import PointsSettings
from points.testing import enrol, order, outbox_events

TIMES = [
    datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    datetime(2026, 3, 1, 12, 0, 5, 120, tzinfo=UTC),
    datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
    datetime(2025, 12, 31, 1, 2, 3, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
]


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("request_id", [None, "req-42"])
@pytest.mark.parametrize("type_", [events.ORDER_RECORDED, events.POINTS_EARNED])
def test_direct_row_equals_the_model_row(
    time: datetime, request_id: str | None, type_: str
) -> None:
    data = CONTRACTS[type_].EXAMPLE
    token = request_id_var.set(request_id)
    try:
        row = events.outbox_row(type_, "m-1", data, time=time)
        model_event = CONTRACTS[type_].written(data).event("m-1", time=time)
        expected = pydantic_outbox_row(
            POINTS_EVENTS, model_event.model_copy(update={"id": row["event_id"]})
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


def test_a_payload_its_model_does_not_describe_is_refused() -> None:
    data = {**CONTRACTS[events.POINTS_EARNED].EXAMPLE, "surprise": 1}
    with pytest.raises(ValueError, match=r"\['surprise'\] not in PointsEarnedV1"):
        events.points_event(events.POINTS_EARNED, "m-1", data)


def _exactly_the_model(type_: str, data: dict[str, Any]) -> None:
    """The payload is what its model dumps: same fields, same order, same bytes."""
    dumped = CONTRACTS[type_].model_validate(data).model_dump(mode="json")
    assert list(data) == list(dumped), type_
    assert orjson.dumps(data) == orjson.dumps(dumped), type_


async def test_real_checkouts_write_exactly_what_the_models_write(
    points_client: httpx.AsyncClient,
    points_settings: PointsSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Orders through the API; the payloads ``outbox_row`` was given (seen on their way in:
    JSONB keeps no key order) are what the models dump, and so is what the outbox holds."""
    given: list[tuple[str, dict[str, Any]]] = []
    direct = events.outbox_row

    def seen(type_: str, member_id: str, data: dict[str, Any], *, time: datetime) -> Any:
        given.append((type_, data))
        return direct(type_, member_id, data, time=time)

    monkeypatch.setattr(events, "outbox_row", seen)
    member = await enrol(points_client)
    now = datetime.now(UTC)
    bodies = [
        order(member, "128.50", now - timedelta(minutes=5)),
        order(
            member,
            "99999.99",
            now - timedelta(minutes=4),
            currency="CNY",
            discount_amount="12.30",
            coupon_used="WELCOME10",
            channel="app",
            items=[
                {"sku": "tea-1", "category": "tea", "unit_price": "64.25", "quantity": 2},
                {"sku": "cup", "unit_price": "0", "quantity": 1},
            ],
        ),
        order(member, "0.50", now - timedelta(minutes=3)),
    ]
    for body in bodies:
        answer = await points_client.post("/v1/orders", json=body)
        assert answer.status_code == 201, answer.text
    assert {t for t, _ in given} == {events.ORDER_RECORDED, events.POINTS_EARNED}
    for type_, data in given:
        _exactly_the_model(type_, data)
    stored = await outbox_events(points_settings.sqlalchemy_url(), member)
    assert {t for t, _ in stored} >= {events.ORDER_RECORDED, events.POINTS_EARNED}
    for type_, payload in stored:
        model = CONTRACTS[type_]
        assert payload["data"] == model.model_validate(payload["data"]).model_dump(mode="json")


async def test_a_check_in_publishes_its_own_event(
    points_client: httpx.AsyncClient, points_settings: PointsSettings
) -> None:
    """DOMAIN counts check-ins in the 360 profile: points says so with member.checked_in,
    whatever the check-in earned."""
    member = await enrol(points_client)
    answer = await points_client.post(f"/v1/members/{member}/check-ins", json={})
    assert answer.status_code == 201, answer.text
    stored = await outbox_events(points_settings.sqlalchemy_url(), member)
    checked = [p for t, p in stored if t == events.MEMBER_CHECKED_IN]
    assert len(checked) == 1
    data = CONTRACTS[events.MEMBER_CHECKED_IN].model_validate(checked[0]["data"])
    assert data.model_dump(mode="json") == checked[0]["data"]
    assert checked[0]["data"]["member_id"] == member
    assert checked[0]["data"]["points"] == answer.json()["points"]
    assert checked[0]["data"]["local_day"] == answer.json()["local_day"]
