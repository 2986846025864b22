"""The payload models: each example is what its model writes, types are unique and versioned,
unknown fields are tolerated and a missing one is refused with its name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loyalty_shared.contracts import (
    CONTRACTS,
    PUBLISHERS,
    EventPayload,
    InvalidPayload,
    publisher_of,
)
from loyalty_shared.contracts.points import PointsEarnedV1
from loyalty_shared.events import CloudEvent, make_event
from loyalty_shared.topics import ALL_EVENT_TOPICS

MODELS = sorted(CONTRACTS.values(), key=lambda m: m.TYPE)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.TYPE)
def test_the_example_is_exactly_what_the_model_writes(model: type[EventPayload]) -> None:
    parsed = model.model_validate(model.EXAMPLE)
    assert parsed.model_dump(mode="json") == model.EXAMPLE
    assert list(model.EXAMPLE) == list(model.model_fields)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.TYPE)
def test_an_event_built_from_the_model_is_read_back_by_it(model: type[EventPayload]) -> None:
    payload = model.model_validate(model.EXAMPLE)
    event = payload.event("m-1001")
    again = CloudEvent.from_json_bytes(event.to_json_bytes())
    assert (again.type, again.source, again.subject) == (model.TYPE, model.SOURCE, "m-1001")
    assert model.of(again) == payload
    assert model.TOPIC in ALL_EVENT_TOPICS


def test_each_type_has_one_publisher_and_one_model() -> None:
    types = [m.TYPE for models in PUBLISHERS.values() for m in models]
    assert len(types) == len(set(types)) == len(CONTRACTS)
    for service, models in PUBLISHERS.items():
        assert {m.SOURCE for m in models} == {f"loyalty/{service}"}
        assert all(publisher_of(m.TYPE) == service for m in models)
    assert publisher_of("loyalty.nobody.publishes.v1") is None


def test_unknown_fields_are_ignored_and_a_missing_field_is_named() -> None:
    data = {**PointsEarnedV1.EXAMPLE, "added_in_a_later_release": 1}
    event = make_event(PointsEarnedV1.SOURCE, PointsEarnedV1.TYPE, "m-1", data)
    assert PointsEarnedV1.of(event).points == PointsEarnedV1.EXAMPLE["points"]
    missing = {k: v for k, v in PointsEarnedV1.EXAMPLE.items() if k != "points"}
    with pytest.raises(InvalidPayload, match=r"points: Field required"):
        PointsEarnedV1.of(make_event(PointsEarnedV1.SOURCE, PointsEarnedV1.TYPE, "m-1", missing))
    wrong = {**PointsEarnedV1.EXAMPLE, "occurred_at": "2026-11-23T10:15:02"}  # no offset
    with pytest.raises(InvalidPayload, match=r"occurred_at: .*timezone"):
        PointsEarnedV1.of(make_event(PointsEarnedV1.SOURCE, PointsEarnedV1.TYPE, "m-1", wrong))


def test_a_model_reads_only_its_own_type() -> None:
    other = make_event("loyalty/points", "loyalty.points.expired.v1", "m-1", {})
    with pytest.raises(InvalidPayload, match=r"reads loyalty\.points\.earned\.v1"):
        PointsEarnedV1.of(other)


def test_the_catalogue_in_docs_lists_every_type_with_its_models_fields() -> None:
    """docs/events.md's catalogue is the models': every type, its model, its fields in order."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "events.md"
    rows = re.findall(
        r"^\| `(loyalty\.[a-z_.0-9]+)` \| `(\w+)` \| (.+) \|$", docs.read_text(), re.M
    )
    listed = {t: (name, re.findall(r"`(\w+)`", fields)) for t, name, fields in rows}
    assert listed == {m.TYPE: (m.__name__, list(m.model_fields)) for m in CONTRACTS.values()}
