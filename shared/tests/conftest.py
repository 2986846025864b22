"""Fixtures for the event mechanisms: a throwaway database with outbox and inbox, fresh topics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import Column, Integer, Table, Text, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from loyalty_shared.db import create_sessionmaker, make_metadata
from loyalty_shared.events import CloudEvent, make_event
from loyalty_shared.kafka import ensure_topics, make_producer
from loyalty_shared.outbox import OUTBOX_NOTIFY_DDL
from loyalty_shared.settings import CommonSettings
from loyalty_shared.tables import pipeline_tables
from loyalty_shared.testing import Infra, settings_overrides
from loyalty_shared.topics import dlq_topic

COUNTED = "loyalty.test.counted.v1"


def counted(member: str, n: int = 0, *, event_id: str | None = None) -> CloudEvent:
    return make_event("loyalty/test", COUNTED, member, {"n": n}, event_id=event_id)


async def count_effect_handler(session: AsyncSession, event: CloudEvent) -> None:
    """The handler effect tests count: one row per subject, +1 per applied event."""
    await session.execute(
        text(
            "INSERT INTO effects (key, count) VALUES (:k, 1) "
            "ON CONFLICT (key) DO UPDATE SET count = effects.count + 1"
        ),
        {"k": event.subject},
    )


async def read_topic(
    bootstrap: str, topic: str, expected: int, *, timeout: float = 60.0
) -> list[ConsumerRecord[Any, Any]]:
    """Every record of ``topic`` from the beginning, once at least ``expected`` have arrived."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, metadata_max_age_ms=1000
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        partitions: set[int] | None = None
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                if loop.time() > deadline:
                    raise AssertionError(f"topic {topic} does not exist")
                await consumer.topics()
                await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord[Any, Any]] = []
        while len(records) < expected:
            if loop.time() > deadline:
                raise AssertionError(
                    f"{len(records)} of {expected} records arrived in {topic} within {timeout}s"
                )
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                records.extend(batch)
        # anything beyond ``expected`` that is already there too
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(batch)
        return records
    finally:
        await consumer.stop()


@dataclass
class EventsDb:
    url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: CommonSettings
    outbox: Table
    topic: str

    def with_settings(self, **changes: Any) -> CommonSettings:
        return self.settings.model_copy(update=changes)

    async def outbox_rows(self) -> list[Any]:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT id, event_id, topic, key, sent_at, kafka_partition, kafka_offset "
                    "FROM outbox ORDER BY id"
                )
            )
            return list(result.all())

    async def effects(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            result = await conn.execute(text("SELECT key, count AS n FROM effects"))
            return {row.key: int(row.n) for row in result}

    async def inbox_ids(self) -> list[str]:
        async with self.engine.connect() as conn:
            result = await conn.execute(text("SELECT event_id FROM inbox"))
            return [row.event_id for row in result]

    @staticmethod
    def event(member: str, n: int = 0, *, event_id: str | None = None) -> CloudEvent:
        return counted(member, n, event_id=event_id)

    count_effect = staticmethod(count_effect_handler)

    async def produce(self, *records: tuple[str, bytes], topic: str | None = None) -> None:
        """Produce raw ``(key, value)`` records, in order, straight to the broker."""
        producer = make_producer(self.settings, client_id="test-producer")
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(topic or self.topic, value, key=key.encode())
        finally:
            await producer.stop()

    async def committed(self, group_id: str) -> dict[int, int]:
        """The group's committed offsets for this test's topic (partition -> offset)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            if not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(self.topic) or set()
            found: dict[int, int] = {}
            for partition in sorted(partitions):
                offset = await consumer.committed(TopicPartition(self.topic, partition))
                if offset is not None and offset >= 0:
                    found[partition] = offset
            return found
        finally:
            await consumer.stop()

    async def read(
        self, topic: str, expected: int, *, timeout: float = 60.0
    ) -> list[ConsumerRecord[Any, Any]]:
        return await read_topic(self.settings.kafka_bootstrap, topic, expected, timeout=timeout)


@pytest.fixture
async def events_db(infra: Infra) -> AsyncIterator[EventsDb]:
    """A new database (outbox, inbox, an ``effects`` counter table) and a new topic per test."""
    url = await infra.create_database("events")
    engine = create_async_engine(url)
    metadata = make_metadata()
    outbox = pipeline_tables(metadata).outbox
    Table(
        "effects",
        metadata,
        Column("key", Text, primary_key=True),
        Column("count", Integer, nullable=False),
    )
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        for ddl in OUTBOX_NOTIFY_DDL:
            await conn.execute(text(ddl))
    suffix = uuid.uuid4().hex[:10]
    settings = CommonSettings(
        **{
            **settings_overrides(infra, url),
            "service_name": f"evt-{suffix}",
            "kafka_topic_partitions": 3,
        }
    )
    topic = f"loyalty.test-{suffix}.events"
    await ensure_topics(settings, [topic, dlq_topic(topic)])
    try:
        yield EventsDb(url, engine, create_sessionmaker(engine), settings, outbox, topic)
    finally:
        await engine.dispose()


@pytest.fixture
def restart_broker(infra: Infra) -> Callable[[], Awaitable[None]]:
    """Stop and start the embedded broker (memory only: it comes back empty)."""
    if infra.broker is None:
        pytest.skip("the broker is external: it cannot be restarted by the tests")
    broker = infra.broker

    async def restart() -> None:
        try:
            await asyncio.to_thread(broker.stop)
        finally:
            await asyncio.to_thread(broker.start)

    return restart
