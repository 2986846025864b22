"""Scores travel: a member whose spend puts them in the high value tier gets the high-value
SLA clock, through every service and over the real broker, with no hand-made event.

Points records the orders (its outbox, its relay); segmentation folds them into profiles
(its consumer), a recompute scores the value tiers and publishes the changes
(``loyalty.profile.value_tier_changed.v1``, its outbox, its relay); feedback projects them
(its consumer), and a complaint opened afterwards gets the clock of the value tier.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from feedback.settings import FeedbackSettings
from feedback.worker import build_consumer as feedback_consumer
from loyalty_shared.db import create_sessionmaker
from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.testing import background, eventually, start_group_at_end
from loyalty_shared.topics import SEGMENTATION_EVENTS
from segmentation.settings import SegmentationSettings

OPS = {"Authorization": "Bearer test-ops-key"}


@pytest.fixture
async def engines(
    segmentation_settings: SegmentationSettings, feedback_settings: FeedbackSettings
) -> AsyncIterator[dict[str, AsyncEngine]]:
    made = {
        "segmentation": create_async_engine(segmentation_settings.sqlalchemy_url()),
        "feedback": create_async_engine(feedback_settings.sqlalchemy_url()),
    }
    yield made
    for engine in made.values():
        await engine.dispose()


async def _history(client: httpx.AsyncClient, member: str, amounts: list[str]) -> None:
    """The member, enrolled, with orders over the last months (the batch import)."""
    now = datetime.now(UTC)
    orders = [
        {
            "order_id": f"o-{uuid.uuid4().hex[:12]}",
            "member_id": member,
            "amount": amount,
            "occurred_at": (now - timedelta(days=20 * (i + 1))).isoformat(),
        }
        for i, amount in enumerate(amounts)
    ]
    imported = await client.post("/v1/orders/batch", json={"orders": orders, "enrol_missing": True})
    assert imported.status_code == 200, imported.text
    assert imported.json()["created"] == len(orders), imported.text


async def _recompute(client: httpx.AsyncClient) -> None:
    accepted = await client.post("/v1/analytics/recompute", json={}, headers=OPS)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()["job_id"]

    async def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/v1/jobs/{job}", headers=OPS)).json()
        return body if body["status"] in ("succeeded", "failed") else None

    assert (await eventually(finished, timeout=120))["status"] == "succeeded"


async def _complaint(client: httpx.AsyncClient, member: str) -> dict[str, Any]:
    opened = await client.post(
        "/v1/complaints",
        json={"member_id": member, "channel": "web", "category": "delivery", "description": "x"},
    )
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    return body


async def test_a_high_value_member_gets_the_high_value_clock(  # type: ignore[no-untyped-def]
    gateway_client: httpx.AsyncClient,
    pipeline,
    engines: dict[str, AsyncEngine],
    segmentation_settings: SegmentationSettings,
    feedback_settings: FeedbackSettings,
) -> None:
    client = gateway_client
    high, low = f"m-hv-{uuid.uuid4().hex[:10]}", f"m-lv-{uuid.uuid4().hex[:10]}"
    relay = OutboxRelay(
        segmentation_settings, engines["segmentation"], topics=[SEGMENTATION_EVENTS]
    )
    group = f"feedback-{uuid.uuid4().hex[:6]}"
    consumer = feedback_consumer(
        feedback_settings, create_sessionmaker(engines["feedback"]), group_id=group
    )
    await start_group_at_end(feedback_settings, group, consumer.topics)
    async with background(relay.run, consumer.run):
        # the biggest annual spend of anyone, over 5 orders: top 20% and >= 5 repeat orders
        await _history(client, high, ["99999.99"] * 5)
        await _history(client, low, ["9.90"])

        async def profiled(member: str, orders: int) -> bool:
            profile = await client.get(f"/v1/profiles/{member}", headers=OPS)
            return profile.status_code == 200 and profile.json()["order_count"] == orders

        await eventually(lambda: profiled(high, 5), timeout=60)
        await eventually(lambda: profiled(low, 1), timeout=60)
        await _recompute(client)
        profiles = [
            (await client.get(f"/v1/profiles/{m}", headers=OPS)).json() for m in (high, low)
        ]
        assert [p["value_tier"] for p in profiles] == ["high", "low"]

        async def projected(member: str, value_tier: str) -> bool:
            seen = await client.get(f"/v1/feedback/members/{member}", headers=OPS)
            return seen.status_code == 200 and seen.json()["value_tier"] == value_tier

        await eventually(lambda: projected(high, "high"), timeout=60)
        await eventually(lambda: projected(low, "low"), timeout=60)

    for_high = await _complaint(client, high)
    for_low = await _complaint(client, low)
    assert for_high["member_value_tier"] == "high" and for_low["member_value_tier"] == "low"
    assert "value-high" in for_high["sla"]["policy_ids"]
    assert "value-high" not in for_low["sla"]["policy_ids"]
    high_due = datetime.fromisoformat(for_high["first_response_due_at"])
    low_due = datetime.fromisoformat(for_low["first_response_due_at"])
    assert high_due < low_due
