"""Topic creation and the broker reachability probe against the real broker."""

import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from loyalty_shared.devstack.broker import free_port
from loyalty_shared.kafka import broker_reachable, ensure_topics
from loyalty_shared.testing import Infra


async def test_ensure_topics_creates_the_missing_ones_with_the_configured_partitions(
    events_db: Any,
) -> None:
    settings = events_db.with_settings(kafka_topic_partitions=4)
    base = f"loyalty.test-{uuid.uuid4().hex[:8]}"
    first, second = f"{base}.a", f"{base}.b"

    assert await ensure_topics(settings, [first]) == [first]
    # already there: only the new one is created, nothing fails
    assert await ensure_topics(settings, [first, second]) == [second]
    assert await ensure_topics(settings, [first, second]) == []

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        assert consumer.partitions_for_topic(first) == {0, 1, 2, 3}
        assert consumer.partitions_for_topic(second) == {0, 1, 2, 3}
    finally:
        await consumer.stop()


async def test_broker_reachable_tells_a_listening_broker_from_a_closed_port(infra: Infra) -> None:
    assert await broker_reachable(infra.kafka_bootstrap)
    assert not await broker_reachable(f"127.0.0.1:{free_port()}", timeout=0.5)
    # any of several servers will do
    assert await broker_reachable(f"127.0.0.1:{free_port()},{infra.kafka_bootstrap}")
