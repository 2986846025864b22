"""An order through the gateway crosses the outbox, the broker and the inbox into a profile."""

import uuid
from datetime import UTC, datetime

import httpx

from loyalty_shared.testing import eventually


async def test_order_through_gateway_reaches_profile(
    gateway_client: httpx.AsyncClient, pipeline
) -> None:  # type: ignore[no-untyped-def]
    member = f"m-{uuid.uuid4().hex[:10]}"
    enrolled = await gateway_client.post("/v1/members", json={"member_id": member})
    assert enrolled.status_code == 201
    order = {
        "order_id": f"o-{uuid.uuid4().hex[:10]}",
        "member_id": member,
        "amount": "256.40",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    recorded = await gateway_client.post(
        "/v1/orders", json=order, headers={"X-Request-ID": "trace-123"}
    )
    assert recorded.status_code == 201
    assert recorded.headers["x-request-id"] == "trace-123"

    async def profile() -> dict | None:  # type: ignore[type-arg]
        response = await gateway_client.get(f"/v1/profiles/{member}")
        if response.status_code != 200:
            return None
        body = response.json()
        return body if body["order_count"] == 1 and body["points_earned"] == 256 else None

    # a hang guard, not a speed target (profile freshness is measured by bench/segmentation.py)
    body = await eventually(profile, timeout=60.0)
    assert body["total_spend"] == "256.40"
    assert body["last_order_at"].startswith(order["occurred_at"][:19])
