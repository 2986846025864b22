"""One row the broker refuses does not stop the event stream (finding 2 of #15).

On f7f80bb a 1.5 MB interaction got into the points outbox; the relay failed on that row
for ever and no later event reached segmentation. Now the API refuses such input (422),
and should a row too large for the broker still reach the outbox, the relay parks it and
the events behind it go out: an order placed after it shows in the member's profile.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from loyalty_shared.events import make_event
from loyalty_shared.outbox import enqueue
from loyalty_shared.testing import eventually
from loyalty_shared.topics import POINTS_EVENTS
from points.db import outbox
from points.settings import PointsSettings

OPS = {"Authorization": "Bearer test-ops-key"}


async def test_a_row_too_large_is_parked_and_the_next_order_reaches_the_profile(  # type: ignore[no-untyped-def]
    gateway_client: httpx.AsyncClient, pipeline, points_settings: PointsSettings
) -> None:
    client = gateway_client
    member = f"m-{uuid.uuid4().hex[:10]}"
    assert (await client.post("/v1/members", json={"member_id": member})).status_code == 201
    now = datetime.now(UTC).isoformat()

    huge = {"blob": "x" * 1_500_000}
    refused = await client.post(
        "/v1/interactions",
        json={
            "event_id": f"ev-{uuid.uuid4().hex}",
            "member_id": member,
            "type": "review",
            "occurred_at": now,
            "attributes": huge,
        },
    )
    assert refused.status_code in (413, 422), refused.text  # the gateway's or the service's

    # a row that got into the outbox anyway (written before the limit, or by a bug)
    stuck = make_event(
        "loyalty/points", "loyalty.interaction.recorded.v1", member, {"attributes": huge}
    )
    engine = create_async_engine(points_settings.sqlalchemy_url())
    try:
        async with engine.begin() as conn:
            await enqueue(conn, outbox, POINTS_EVENTS, stuck)
    finally:
        await engine.dispose()

    placed = await client.post(
        "/v1/orders",
        json={
            "order_id": f"o-{uuid.uuid4().hex[:12]}",
            "member_id": member,
            "amount": "25.00",
            "occurred_at": now,
        },
    )
    assert placed.status_code == 201, placed.text

    async def profiled() -> bool:
        response = await client.get(f"/v1/profiles/{member}", headers=OPS)
        return response.status_code == 200 and response.json()["order_count"] == 1

    await eventually(profiled, timeout=60)
    parked = await client.get("/v1/ops/dead-letters", params={"service": "points"})
    assert stuck.id in {item["event_id"] for item in parked.json()["items"]}
    report = (await client.get("/v1/ops/pipeline", headers=OPS)).json()
    assert report["services"]["points"]["outbox"]["parked"] >= 1
