"""``loyalty-dev events tail TOPIC [--member ID]``: the events on a topic as they come.

librdkafka tools such as kcat cannot talk to the embedded broker (they refuse its
ApiVersions answer), so the dev stack watches the stream with aiokafka, as the services
read it. No consumer group: nothing is committed, no service's offsets are touched.
One line per event (envelope and payload), or an indented document with ``--pretty``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition

from loyalty_shared.devstack.stack import KAFKA_DEFAULT_PORT
from loyalty_shared.kafka import connection_options
from loyalty_shared.settings import CommonSettings

ENVELOPE = ("id", "type", "source", "subject", "time")


class UnknownTopic(LookupError):
    """The broker has no such topic (a typo, or the stack is not running)."""


def default_bootstrap() -> str:
    """The dev stack's broker (``KAFKA_PORT`` as ``make run`` reads it)."""
    return os.environ.get("KAFKA_BOOTSTRAP") or (
        f"127.0.0.1:{os.environ.get('KAFKA_PORT', KAFKA_DEFAULT_PORT)}"
    )


def describe(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes
) -> dict[str, Any]:
    """The record as printed: where it is, the envelope's attributes, then its data."""
    try:
        doc: Any = json.loads(value)
    except ValueError:
        doc = None
    record: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset}
    record["key"] = key.decode("utf-8", "replace") if key is not None else None
    if not isinstance(doc, dict):
        record["value"] = value.decode("utf-8", "replace")
        return record
    for name in ENVELOPE:
        if name in doc:
            record[name] = doc[name]
    record["data"] = doc.get("data")
    return record


def matches(record: dict[str, Any], member: str | None) -> bool:
    return member is None or member in (record.get("key"), record.get("subject"))


def render(record: dict[str, Any], pretty: bool) -> str:
    if pretty:
        return json.dumps(record, indent=2, ensure_ascii=False, default=str)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


async def tail(
    topic: str,
    *,
    bootstrap: str,
    member: str | None = None,
    from_beginning: bool = False,
    pretty: bool = False,
    out: TextIO,
    limit: int | None = None,
    ready: Callable[[], None] | None = None,
) -> int:
    """Print ``topic``'s events (one member's with ``member``) until ``limit`` are printed
    or the task is cancelled; ``ready`` is called once the partitions are assigned."""
    # security settings (SASL, TLS) from LOYALTY_KAFKA_* as every client of the platform
    settings = CommonSettings(kafka_bootstrap=bootstrap, service_name="loyalty-dev")
    consumer = AIOKafkaConsumer(
        **connection_options(settings), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    printed = 0
    try:
        await consumer.topics()  # the cluster's metadata
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            raise UnknownTopic(f"no topic {topic!r} on {bootstrap}")
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
        for partition in assigned:
            await consumer.position(partition)  # the end is fixed before anything is sent
        if ready is not None:
            ready()
        async for message in consumer:
            record = describe(
                message.topic, message.partition, message.offset, message.key, message.value or b""
            )
            if not matches(record, member):
                continue
            out.write(render(record, pretty) + "\n")
            out.flush()
            printed += 1
            if limit is not None and printed >= limit:
                break
    finally:
        await consumer.stop()
    return printed
