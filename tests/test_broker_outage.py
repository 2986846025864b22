"""Broker down while 100 orders are posted: all accepted, and each arrives once when it is back."""

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from loyalty_shared.testing import Infra, eventually
from points.settings import PointsSettings
from segmentation.profiles.handlers import HANDLERS
from segmentation.settings import SegmentationSettings

ORDERS = 100


async def _profile(client: httpx.AsyncClient, member: str) -> dict | None:  # type: ignore[type-arg]
    response = await client.get(f"/v1/profiles/{member}")
    return response.json() if response.status_code == 200 else None


async def test_orders_posted_while_the_broker_is_down_arrive_exactly_once(  # type: ignore[no-untyped-def]
    gateway_client: httpx.AsyncClient,
    pipeline,
    infra: Infra,
    points_settings: PointsSettings,
    segmentation_settings: SegmentationSettings,
) -> None:
    if not infra.can_restart_broker:
        pytest.skip("the broker is external: it cannot be stopped by the tests")
    assert infra.broker is not None
    member = f"m-{uuid.uuid4().hex[:10]}"
    assert (await gateway_client.post("/v1/members", json={"member_id": member})).status_code == 201
    # the pipeline is flowing before the outage
    await eventually(lambda: _profile(gateway_client, member), timeout=60)

    await asyncio.to_thread(infra.broker.stop)
    try:
        statuses = []
        for n in range(ORDERS):
            response = await gateway_client.post(
                "/v1/orders",
                json={
                    "order_id": f"o-{uuid.uuid4().hex[:12]}-{n}",
                    "member_id": member,
                    "amount": "10.00",
                    "occurred_at": datetime.now(UTC).isoformat(),
                },
            )
            statuses.append(response.status_code)
        assert statuses == [201] * ORDERS
    finally:
        await asyncio.to_thread(infra.broker.start)

    async def all_in() -> dict | None:  # type: ignore[type-arg]
        body = await _profile(gateway_client, member)
        return body if body is not None and body["order_count"] >= ORDERS else None

    body = await eventually(all_in, timeout=120, interval=0.5)
    assert body["order_count"] == ORDERS
    assert Decimal(body["total_spend"]) == Decimal("10.00") * ORDERS

    points_db = create_async_engine(points_settings.sqlalchemy_url())
    segmentation_db = create_async_engine(segmentation_settings.sqlalchemy_url())
    try:
        async with points_db.connect() as conn:
            event_ids = list(
                (
                    await conn.execute(
                        text(
                            "SELECT event_id FROM outbox "
                            "WHERE key = :m AND event_type = ANY(:types)"
                        ),
                        {"m": member, "types": sorted(HANDLERS)},
                    )
                ).scalars()
            )
        # enrolment, then each order and the points it earned: all of them segmentation's
        assert len(event_ids) >= 1 + 2 * ORDERS

        async def all_sent() -> bool:
            async with points_db.connect() as conn:
                unsent = (
                    await conn.execute(
                        text("SELECT count(*) FROM outbox WHERE key = :m AND sent_at IS NULL"),
                        {"m": member},
                    )
                ).scalar_one()
            return bool(unsent == 0)

        await eventually(all_sent, timeout=60, interval=0.5)

        async def inbox_has_all() -> bool:
            async with segmentation_db.connect() as conn:
                seen = (
                    await conn.execute(
                        text(
                            "SELECT event_id, count(*) AS n FROM inbox "
                            "WHERE event_id = ANY(:ids) GROUP BY event_id"
                        ),
                        {"ids": event_ids},
                    )
                ).all()
            assert all(row.n == 1 for row in seen)
            return len(seen) == len(event_ids)

        await eventually(inbox_has_all, timeout=60, interval=0.5)
    finally:
        await points_db.dispose()
        await segmentation_db.dispose()

    # replays of what the restarted broker lost are harmless: the count stays put
    await asyncio.sleep(3)
    later = await _profile(gateway_client, member)
    assert later is not None
    assert later["order_count"] == ORDERS
    assert Decimal(later["total_spend"]) == Decimal("10.00") * ORDERS

    # every balance still equals its ledger (the reconciliation, through the gateway: admin)
    reconciled = await gateway_client.get("/v1/ops/ledger/verify")
    assert reconciled.status_code == 200, reconciled.text
    assert reconciled.json()["drift"] == [] and reconciled.json()["drift_count"] == 0
    assert reconciled.json()["members"] >= 1
