"""The webhooks consumer in two lanes at once (``consumer_concurrency`` 2): each lane's
events become deliveries in that lane's own transaction, none lost, each member in order."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from loyalty_shared.contracts.points import TierChangedV1
from loyalty_shared.db import create_sessionmaker
from loyalty_shared.events import CloudEvent
from loyalty_shared.kafka import ensure_topics, make_producer
from loyalty_shared.testing import (
    Infra,
    asgi_client,
    background,
    eventually,
    migrated_database,
    running_app,
    settings_overrides,
    start_group_at_end,
)
from loyalty_shared.topics import ALL_EVENT_TOPICS
from webhooks.deliveries.handlers import WebhookConsumer
from webhooks.main import create_app
from webhooks.settings import WebhooksSettings

SERVICE_DIR = Path(__file__).resolve().parents[1]


class Overlapping(WebhookConsumer):
    """Slow handling, so that the two lanes' transactions interleave."""

    lane_safe = True  # WebhookConsumer's, with a sleep and counters of the class
    in_flight = 0
    most = 0

    async def apply_fresh(self, session: AsyncSession, events: list[CloudEvent]) -> int:
        Overlapping.in_flight += 1
        Overlapping.most = max(Overlapping.most, Overlapping.in_flight)
        try:
            return await super().apply_fresh(session, events)
        finally:
            Overlapping.in_flight -= 1

    async def handle(self, session: AsyncSession, event: CloudEvent) -> None:
        await asyncio.sleep(0.01)  # the other lane handles some of its events meanwhile
        await super().handle(session, event)


async def test_two_lanes_each_deliver_their_batch_in_their_own_transaction(
    infra: Infra,
) -> None:
    assert WebhookConsumer.lane_safe
    url = await migrated_database(infra, "webhooks", SERVICE_DIR)
    settings = WebhooksSettings(
        **settings_overrides(infra, url), consumer_concurrency=2, consumer_batch_size=8
    )
    await ensure_topics(settings, list(ALL_EVENT_TOPICS))
    group = f"webhooks-lanes-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(settings, group, ALL_EVENT_TOPICS)
    engine = create_async_engine(settings.sqlalchemy_url())
    sessionmaker = create_sessionmaker(engine)
    try:
        async with running_app(create_app(settings)) as app, asgi_client(app) as client:
            made = await client.post(
                "/v1/webhooks",
                json={"url": "http://127.0.0.1:9/tiers", "event_types": [TierChangedV1.TYPE]},
            )
            assert made.status_code == 201, made.text
        members = [f"m-{uuid.uuid4().hex[:10]}" for _ in range(16)]
        lanes = await _send(settings, members, rounds=4)
        assert lanes == {0, 1}  # both lanes have work
        consumer = Overlapping(settings, sessionmaker, group_id=group)
        async with background(consumer.run):
            await eventually(lambda: _count(engine, members, 64), timeout=60)

        assert Overlapping.most == 2  # the lanes did run at once
        async with engine.connect() as conn:
            elsewhere = await conn.execute(
                text(
                    "SELECT d.event_id FROM webhook_deliveries d JOIN inbox i USING (event_id) "
                    "WHERE d.member_key = ANY(:m) AND d.xmin::text <> i.xmin::text"
                ),
                {"m": members},
            )
            # each event's delivery in the transaction that claimed the event (its lane's)
            assert elsewhere.all() == []
            rows = await conn.execute(
                text(
                    "SELECT member_key, body::jsonb -> 'data' ->> 'to_tier' FROM "
                    "webhook_deliveries WHERE member_key = ANY(:m) ORDER BY id"
                ),
                {"m": members},
            )
            tiers: dict[str, list[str]] = {}
            for member, tier in rows:
                tiers.setdefault(member, []).append(tier)
        assert tiers == {m: [f"t{n}" for n in range(4)] for m in members}  # in order
    finally:
        await engine.dispose()


async def _send(settings: WebhooksSettings, members: list[str], *, rounds: int) -> set[int]:
    """``rounds`` tier changes per member (to t0, t1, ...); the lanes their partitions go to."""
    producer = make_producer(settings, client_id="webhooks-lanes-producer")
    await producer.start()
    lanes: set[int] = set()
    try:
        for n in range(rounds):
            for member in members:
                event = TierChangedV1.sample(member_id=member, to_tier=f"t{n}").event(member)
                sent = await producer.send_and_wait(
                    TierChangedV1.TOPIC, event.to_json_bytes(), key=member.encode()
                )
                lanes.add(sent.partition % 2)
    finally:
        await producer.stop()
    return lanes


async def _count(engine: AsyncEngine, members: list[str], expected: int) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT count(*) FROM webhook_deliveries WHERE member_key = ANY(:m)"),
            {"m": members},
        )
    return int(found or 0) >= expected
