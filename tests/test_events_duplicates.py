"""The same event delivered twice to segmentation changes the profile once."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from loyalty_shared.events import CloudEvent
from loyalty_shared.kafka import make_producer
from loyalty_shared.testing import eventually
from loyalty_shared.topics import POINTS_EVENTS
from points.settings import PointsSettings
from segmentation.settings import SegmentationSettings

ORDER_RECORDED = "loyalty.order.recorded.v1"


async def _profile_with(client: httpx.AsyncClient, member: str, orders: int) -> dict | None:  # type: ignore[type-arg]
    response = await client.get(f"/v1/profiles/{member}")
    if response.status_code != 200:
        return None
    body = response.json()
    return body if body["order_count"] == orders else None


async def _post_order(client: httpx.AsyncClient, member: str, amount: str) -> str:
    order_id = f"o-{uuid.uuid4().hex[:12]}"
    response = await client.post(
        "/v1/orders",
        json={
            "order_id": order_id,
            "member_id": member,
            "amount": amount,
            "occurred_at": datetime.now(UTC).isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    return order_id


async def test_same_event_delivered_twice_changes_the_profile_once(  # type: ignore[no-untyped-def]
    gateway_client: httpx.AsyncClient,
    pipeline,
    points_settings: PointsSettings,
    segmentation_settings: SegmentationSettings,
) -> None:
    member = f"m-{uuid.uuid4().hex[:10]}"
    assert (await gateway_client.post("/v1/members", json={"member_id": member})).status_code == 201
    await _post_order(gateway_client, member, "10.00")
    await eventually(lambda: _profile_with(gateway_client, member, 1), timeout=60)

    # A new order event, shaped exactly like the one points published, delivered twice.
    points_db = create_async_engine(points_settings.sqlalchemy_url())
    try:
        async with points_db.connect() as conn:
            published = (
                await conn.execute(
                    text("SELECT payload::text FROM outbox WHERE key = :m AND event_type = :t"),
                    {"m": member, "t": ORDER_RECORDED},
                )
            ).scalar_one()
    finally:
        await points_db.dispose()
    payload = orjson.loads(published)
    payload["id"] = str(uuid.uuid4())
    payload["data"]["order_id"] = f"o-{uuid.uuid4().hex[:12]}"
    payload["data"]["amount"] = "5.50"
    duplicate = CloudEvent.model_validate(payload)
    raw = duplicate.to_json_bytes()
    producer = make_producer(points_settings, client_id="test-duplicates")
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(
                POINTS_EVENTS,
                raw,
                key=member.encode(),
                headers=[("ce_type", ORDER_RECORDED.encode())],
            )
    finally:
        await producer.stop()

    # A later order on the same partition: once it is in, both copies were read before it.
    await _post_order(gateway_client, member, "1.00")
    body = await eventually(lambda: _profile_with(gateway_client, member, 3), timeout=60)
    assert Decimal(body["total_spend"]) == Decimal("16.50")

    segmentation_db = create_async_engine(segmentation_settings.sqlalchemy_url())
    try:
        async with segmentation_db.connect() as conn:
            seen = (
                await conn.execute(
                    text("SELECT count(*) FROM inbox WHERE event_id = :id"), {"id": duplicate.id}
                )
            ).scalar_one()
    finally:
        await segmentation_db.dispose()
    assert seen == 1
    again = await gateway_client.get(f"/v1/profiles/{member}")
    assert again.json()["order_count"] == 3
