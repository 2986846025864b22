"""Idempotent event consumer: inbox table + aiokafka loop with retries and a dead-letter topic.

- The event id goes into ``inbox`` with ON CONFLICT DO NOTHING in the same
  transaction as the handler's effect: a redelivered event changes nothing.
- Offsets are committed only after the database commit.
- A partition's batch runs in one transaction; if it fails, each event runs on
  its own with retries and backoff; an event that still fails goes to
  ``<topic>.dlq`` with the error in its headers, and the partition moves on.
- Database outages are not the message's fault: they are retried without end,
  never dead-lettered.
- A broker that lost its data (the embedded one is memory-only) also lost the
  group's offsets; the consumer notices before its next commit and reads its
  partitions again from the start (the inbox makes that harmless).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, MetaData, Table, Text, func, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.events import CloudEvent
from loyalty_shared.kafka import make_producer
from loyalty_shared.runtime import sleep_or_stop
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import dlq_topic

log = structlog.get_logger("loyalty.inbox")

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("event_id", Text, primary_key=True),
        Column("event_type", Text, nullable=False),
        Column("source", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class PoisonMessage(Exception):
    """A record that can never be processed (not an envelope): dead-lettered at once."""


def is_infrastructure_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | ConnectionError | TimeoutError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        return True
    return type(exc).__name__ in {
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "ConnectionFailureError",
    }


@dataclass
class ConsumerStats:
    processed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    rewinds: int = 0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: EventConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        gone = set(revoked)
        try:
            await self.owner._commit(only=gone)
        finally:
            # Whoever gets these partitions next starts from the group's committed
            # offsets; ours would only be committed for partitions we no longer own.
            self.owner._forget(gone)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info(
            "partitions_assigned", partitions=sorted(f"{t.topic}:{t.partition}" for t in assigned)
        )


class EventConsumer:
    """Consumes ``topics`` into ``handlers`` (event type -> handler) idempotently."""

    def __init__(
        self,
        settings: CommonSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.topics = list(topics)
        self.handlers = dict(handlers)
        self.group_id = group_id or settings.service_name
        self.stats = ConsumerStats()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: Any = None
        self._processed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        # request ids carried in record headers, bound to the log context per event
        self._request_ids: dict[str, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._run_session(stop)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "consumer_retrying",
                    group=self.group_id,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=backoff,
                )
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await self._close()

    async def _run_session(self, stop: asyncio.Event) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            client_id=f"{self.group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=self.settings.kafka_request_timeout_ms,
            metadata_max_age_ms=5_000,
            max_poll_records=self.settings.consumer_batch_size,
        )
        self._producer = make_producer(self.settings, client_id=f"{self.group_id}-dlq")
        await self._consumer.start()
        await self._producer.start()
        self._consumer.subscribe(self.topics, listener=_Rebalance(self))
        self._processed.clear()
        self._committed.clear()
        log.info("consumer_started", group=self.group_id, topics=self.topics)
        while not stop.is_set():
            batches = await self._consumer.getmany(
                timeout_ms=200, max_records=self.settings.consumer_batch_size
            )
            for tp, records in batches.items():
                if records:
                    await self._process_partition(tp, records, stop)
                    self._processed[tp] = records[-1].offset + 1
            await self._commit()

    async def _close(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                try:
                    await client.stop()
                except Exception as exc:
                    log.debug("kafka_client_stop_failed", error=str(exc))
        self._consumer = None
        self._producer = None

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {
            tp: off
            for tp, off in self._processed.items()
            if (only is None or tp in only) and tp in assigned and self._committed.get(tp) != off
        }
        if not offsets:
            return
        if await self._broker_lost_offsets(consumer):
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced under us. Not a reason to restart the consumer
            # (that would start one more rebalance): the next poll rejoins, and
            # whoever owns these partitions then reads from the last commit.
            log.info("consumer_commit_skipped_rebalancing", group=self.group_id, error=str(exc))
            return
        self._committed.update(offsets)

    def _forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._processed.pop(tp, None)
            self._committed.pop(tp, None)

    async def _broker_lost_offsets(self, consumer: AIOKafkaConsumer) -> bool:
        """True (and rewinds) if the broker no longer has the offsets we committed."""
        assigned = consumer.assignment()
        probe = next((tp for tp in self._committed if tp in assigned), None)
        if probe is None:
            return False
        if await consumer.committed(probe) is not None:
            return False
        self.stats.rewinds += 1
        log.warning(
            "consumer_broker_lost_offsets_rewinding",
            group=self.group_id,
            partitions=len(assigned),
        )
        self._processed.clear()
        self._committed.clear()
        await consumer.seek_to_beginning(*assigned)
        return True

    async def _process_partition(
        self, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]], stop: asyncio.Event
    ) -> None:
        events: list[tuple[ConsumerRecord[Any, Any], CloudEvent]] = []
        for record in records:
            try:
                event = self._parse(record)
            except PoisonMessage as exc:
                await self._dead_letter(record, exc, attempts=1)
                continue
            events.append((record, event))
        self._request_ids = {
            e.id: v.decode("utf-8", "replace")
            for r, e in events
            for k, v in (r.headers or ())
            if k == "x-request-id"
        }
        if not events:
            return
        try:
            await self._apply([e for _, e in events])
            return
        except Exception as exc:
            if is_infrastructure_error(exc):
                await self._apply_until_db_back(events, stop)
                return
            log.info("consumer_batch_failed_one_by_one", error=f"{type(exc).__name__}: {exc}")
        for record, event in events:
            await self._process_one(record, event, stop)

    def _parse(self, record: ConsumerRecord[Any, Any]) -> CloudEvent:
        if record.value is None:
            raise PoisonMessage("empty record value (tombstone)")
        try:
            return CloudEvent.from_json_bytes(record.value)
        except (ValueError, ValidationError) as exc:
            raise PoisonMessage(f"not a CloudEvents envelope: {exc}") from exc

    async def _apply(self, events: list[CloudEvent]) -> None:
        relevant = [e for e in events if e.type in self.handlers]
        if not relevant:
            return
        async with self.sessionmaker() as session, session.begin():
            result = await session.execute(
                text(
                    "INSERT INTO inbox (event_id, event_type, source) "
                    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), "
                    "CAST(:sources AS text[])) ON CONFLICT DO NOTHING RETURNING event_id"
                ),
                {
                    "ids": [e.id for e in relevant],
                    "types": [e.type for e in relevant],
                    "sources": [e.source for e in relevant],
                },
            )
            fresh = {row[0] for row in result}
            applied = duplicates = 0
            for event in relevant:
                if event.id not in fresh:
                    duplicates += 1
                    continue
                fresh.discard(event.id)  # the same id twice in one batch runs once
                structlog.contextvars.bind_contextvars(
                    event_id=event.id,
                    event_type=event.type,
                    request_id=self._request_ids.get(event.id),
                )
                try:
                    await self.handlers[event.type](session, event)
                finally:
                    structlog.contextvars.unbind_contextvars("event_id", "event_type", "request_id")
                applied += 1
        # counted once the transaction committed (a rolled-back batch is retried)
        self.stats.processed += applied
        self.stats.duplicates += duplicates

    async def _apply_until_db_back(
        self, events: list[tuple[ConsumerRecord[Any, Any], CloudEvent]], stop: asyncio.Event
    ) -> None:
        delay = self.settings.consumer_retry_backoff_seconds
        while True:
            log.warning("consumer_database_unavailable_retrying", retry_in_s=delay)
            await sleep_or_stop(stop, delay)
            if stop.is_set():
                raise asyncio.CancelledError
            try:
                await self._apply([e for _, e in events])
                return
            except Exception as exc:
                if not is_infrastructure_error(exc):
                    # the database is back and the batch still fails: one by one, so
                    # the event at fault is dead-lettered with its record
                    for record, event in events:
                        await self._apply_one_or_dlq(event, record, stop)
                    return
            delay = min(delay * 2, 5.0)

    async def _process_one(
        self, record: ConsumerRecord[Any, Any], event: CloudEvent, stop: asyncio.Event
    ) -> None:
        await self._apply_one_or_dlq(event, record, stop)

    async def _apply_one_or_dlq(
        self, event: CloudEvent, record: ConsumerRecord[Any, Any], stop: asyncio.Event
    ) -> None:
        attempts = 0
        delay = self.settings.consumer_retry_backoff_seconds
        while True:
            attempts += 1
            try:
                await self._apply([event])
                return
            except Exception as exc:
                if is_infrastructure_error(exc):
                    attempts -= 1  # not the message's fault: does not use up attempts
                elif attempts >= self.settings.consumer_max_attempts:
                    log.error(
                        "event_dead_lettered",
                        event_id=event.id,
                        event_type=event.type,
                        error=f"{type(exc).__name__}: {exc}",
                        attempts=attempts,
                    )
                    await self._dead_letter(record, exc, attempts=attempts)
                    return
                await sleep_or_stop(stop, delay)
                if stop.is_set():
                    raise asyncio.CancelledError from exc
                delay = min(delay * 2, 5.0)

    async def _dead_letter(
        self, record: ConsumerRecord[Any, Any], exc: BaseException, *, attempts: int
    ) -> None:
        assert self._producer is not None
        headers = list(record.headers or [])
        headers += [
            ("dlq-error", f"{type(exc).__name__}: {exc}"[:2000].encode()),
            ("dlq-error-type", type(exc).__name__.encode()),
            ("dlq-original-topic", record.topic.encode()),
            ("dlq-original-partition", str(record.partition).encode()),
            ("dlq-original-offset", str(record.offset).encode()),
            ("dlq-attempts", str(attempts).encode()),
            ("dlq-consumer-group", self.group_id.encode()),
            ("dlq-failed-at", datetime.now(UTC).isoformat().encode()),
        ]
        await self._producer.send_and_wait(
            dlq_topic(record.topic), record.value, key=record.key, headers=headers
        )
        self.stats.dead_lettered += 1
        log.error(
            "message_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=f"{type(exc).__name__}: {exc}"[:500],
        )
