"""What segmentation writes to its outbox is what its contract models describe.

Every payload the set-based producers build in SQL (the live refresh's segment
entered/left, the batch refresh's, the recompute's value tier, lifecycle and churn-risk
changes) has exactly its model's fields and validates with it; and the recompute
publishes a score change once: a second recompute with nothing new publishes none.
"""

from __future__ import annotations

from typing import Any

from loyalty_shared.contracts import CONTRACTS
from loyalty_shared.contracts.segmentation import (
    ChurnRiskChangedV1,
    LifecycleChangedV1,
    SegmentEnteredV1,
    SegmentLeftV1,
    ValueTierChangedV1,
)
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id, order


async def _payloads(env: FreshSegmentation) -> list[tuple[str, dict[str, Any]]]:
    rows = await env.sql("SELECT event_type, payload FROM outbox ORDER BY id")
    return [(r.event_type, r.payload) for r in rows]


async def test_every_payload_is_exactly_its_model_and_changes_are_published_once(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    created = await env.client.post(
        "/v1/segments", json={"name": "repeat buyers", "condition": "order_count >= 2"}
    )
    assert created.status_code == 201, created.text
    members = [member_id() for _ in range(6)]
    for i, m in enumerate(members):
        await env.feed(enrolled(m, "2025-01-01"))
        days = [f"2025-{month:02d}-10" for month in range(1, 2 + i)]
        await env.feed(*(order(m, d, str(100 * (i + 1))) for d in days))
    await env.recompute("2025-06-15T12:00:00+00:00")
    # the live refresh's segment entered, the recompute's three kinds
    first = await _payloads(env)
    types = {t for t, _ in first}
    assert {SegmentEnteredV1.TYPE, ValueTierChangedV1.TYPE, LifecycleChangedV1.TYPE} <= types
    for type_, payload in first:
        model = CONTRACTS[type_]
        assert payload["type"] == type_ and payload["source"] == model.SOURCE
        assert set(payload["data"]) == set(model.model_fields), type_
        parsed = model.model_validate(payload["data"])
        assert parsed.model_dump(mode="json").keys() == payload["data"].keys()
    value_tiers = [p["data"] for t, p in first if t == ValueTierChangedV1.TYPE]
    assert sorted(d["member_id"] for d in value_tiers) == sorted(members)
    assert all(d["from_value_tier"] is None for d in value_tiers)
    top = next(d for d in value_tiers if d["member_id"] == members[-1])
    assert top["to_value_tier"] == "high" and top["annual_orders"] == 6
    assert top["annual_spend"] == "3600.00"

    await env.recompute("2025-06-15T12:00:00+00:00")  # nothing changed: nothing published
    assert len(await _payloads(env)) == len(first)
    await env.recompute("2025-12-31T12:00:00+00:00")  # half a year later: stages move
    later = (await _payloads(env))[len(first) :]
    moved = [p["data"] for t, p in later if t == LifecycleChangedV1.TYPE]
    assert moved and all(d["from_stage"] is not None for d in moved)
    assert all(d["from_stage"] != d["to_stage"] for d in moved)
    for type_, payload in later:
        assert set(payload["data"]) == set(CONTRACTS[type_].model_fields), type_
    assert {t for t, _ in later} <= {
        SegmentLeftV1.TYPE,
        SegmentEnteredV1.TYPE,
        ValueTierChangedV1.TYPE,
        LifecycleChangedV1.TYPE,
        ChurnRiskChangedV1.TYPE,
    }
