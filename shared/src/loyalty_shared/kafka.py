"""aiokafka clients built from settings, and topic creation.

Every producer, consumer and admin client of the platform connects with
``connection_options(settings)``: the bootstrap servers, and the security protocol,
SASL mechanism and credentials, and the TLS context the settings ask for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context

from loyalty_shared.settings import CommonSettings

log = structlog.get_logger("loyalty.kafka")


def connection_options(settings: CommonSettings) -> dict[str, Any]:
    """The keyword arguments every aiokafka client of the platform is made with."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        # certificates checked against the CA file (else the system's), host names too
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def make_producer(settings: CommonSettings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=2,
        max_batch_size=256 * 1024,
        max_request_size=settings.kafka_max_message_bytes,
    )


async def ensure_topics(settings: CommonSettings, topics: Iterable[str]) -> list[str]:
    """Create the topics that are missing; returns the ones it created."""
    admin = AIOKafkaAdminClient(
        **connection_options(settings), request_timeout_ms=settings.kafka_request_timeout_ms
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                response = await admin.create_topics(
                    [
                        NewTopic(
                            name=t,
                            num_partitions=settings.kafka_topic_partitions,
                            replication_factor=settings.kafka_replication_factor,
                        )
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                return []
            # The broker answers per topic; a refused topic must not pass for created.
            created: list[str] = []
            for topic_error in response.topic_errors:
                topic, code = topic_error[0], topic_error[1]
                if code == 0:
                    created.append(topic)
                elif code != TopicAlreadyExistsError.errno:  # created meanwhile: fine
                    message = topic_error[2] if len(topic_error) > 2 else None
                    raise for_code(code)(f"cannot create topic {topic!r}: {message or ''}")
            if created:
                log.info("topics_created", topics=created)
            return created
        return missing
    finally:
        await admin.close()


async def broker_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """A TCP connect to any bootstrap server (readiness, not a full metadata round trip)."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host or "127.0.0.1", int(port)), timeout
            )
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return True
    return False
