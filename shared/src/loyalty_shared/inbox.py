"""Idempotent event consumer: inbox table + aiokafka loop with retries and dead letters.

- The event id goes into ``inbox`` with ON CONFLICT DO NOTHING in the same
  transaction as the handler's effect: a redelivered event changes nothing.
- Offsets are committed only after the database commit.
- A poll's records (up to ``consumer_batch_size``, of any partitions) run in one
  transaction, or with ``consumer_concurrency`` N in N transactions at once, each for
  the partitions of one lane (partition number mod N). Every topic is keyed by member, so
  one member's events of one topic always stay in one lane, in order; of several topics
  only when the topics have the same partition count (a consumer in lanes warns at
  assignment when they do not). Only a class declared ``lane_safe`` may run in lanes
  (its per-batch state in the transaction's ``session.info``, not on the instance).
  If a batch fails, each event runs on its own with retries and backoff; an event
  that still fails because of its own
  content is kept in ``dead_letters`` (``loyalty_shared.dead_letters``: listed,
  replayed, discarded) and sent to ``<topic>.dlq`` with the error in its headers,
  and the partition moves on.
- A payload its type's contract model cannot read (``loyalty_shared.contracts``:
  ``InvalidPayload``, or a pydantic ``ValidationError`` from a handler) is the message's
  own fault and will not change on a retry: it is dead-lettered at once, with the reason.
- Transient failures are not the message's fault (``loyalty_shared.failures``: a
  deadlock, a serialization failure, a lock or pool timeout, a lost connection):
  they are retried with backoff without end, never dead-lettered.
- Events about an erased member (``loyalty_shared.erasure``) are recorded in the
  inbox and skipped; the erasure event itself leaves a tombstone, and after the
  service's own handler, the service's outbox rows, dead letters and parked rows
  about the member are dropped in the same transaction.
- A broker that lost its data (the embedded one is memory-only) also lost the
  group's offsets; the consumer notices before its next commit and reads its
  partitions again from the start (the inbox makes that harmless).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, MetaData, Table, Text, func, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.contracts.base import InvalidPayload
from loyalty_shared.dead_letters import record_dead_letter
from loyalty_shared.erasure import MEMBER_ERASED, erased_among, forget_member, record_tombstone
from loyalty_shared.events import CloudEvent
from loyalty_shared.failures import describe, is_transient
from loyalty_shared.kafka import connection_options, make_producer
from loyalty_shared.pipeline import CONSUMER_EVENTS, CONSUMER_LAG, CONSUMER_RETRIES, HANDLER_SECONDS
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


def never_succeeds(exc: BaseException) -> bool:
    """A failure of the event's own content that no retry can change (dead-lettered at once):
    not an envelope, or a payload its contract model cannot read."""
    return isinstance(exc, PoisonMessage | InvalidPayload | ValidationError)


_CLAIM = text(
    "INSERT INTO inbox (event_id, event_type, source) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), "
    "CAST(:sources AS text[])) ON CONFLICT DO NOTHING RETURNING event_id"
)


@dataclass
class ConsumerStats:
    processed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    rewinds: int = 0
    erased_skipped: int = 0
    transient_retries: int = 0


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
        self.owner._check_lane_partitions()


class EventConsumer:
    """Consumes ``topics`` into ``handlers`` (event type -> handler) idempotently.

    Subclasses that apply a batch differently (segmentation's set-based handlers) override
    ``wants``, ``handle`` (one event) and ``apply_fresh`` (the claimed events of one
    transaction, around ``super().apply_fresh``); the inbox claim, the erasure tombstones,
    the retries and the dead letters stay here.

    With ``consumer_concurrency`` > 1 several transactions run through the hooks at once, so
    a class runs in lanes only if it says it may: ``lane_safe = True`` in its own body (not
    inherited: a subclass that does not say so is refused). A lane-safe class keeps the
    state of a batch in the transaction's ``session.info``, never on the instance.
    """

    # handlers are called per event with the transaction's session: nothing kept per batch
    lane_safe: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "lane_safe" not in cls.__dict__:
            cls.lane_safe = False  # a subclass states it for itself

    def __init__(
        self,
        settings: CommonSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        group_id: str | None = None,
    ) -> None:
        if settings.consumer_concurrency > 1 and not self.lane_safe:
            raise ValueError(
                f"{type(self).__name__} is not lane-safe: consumer_concurrency must be 1, "
                f"not {settings.consumer_concurrency} (a class that keeps a batch's state in "
                "the transaction's session.info may declare lane_safe = True)"
            )
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.topics = list(topics)
        self.handlers = dict(handlers)
        self.group_id = group_id or settings.service_name
        self.stats = ConsumerStats()
        self._erasure_key = settings.erasure_key()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: Any = None
        self._processed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._lag_at = 0.0
        # request ids carried in record headers, bound to the log context per event
        self._request_ids: dict[str, str] = {}
        self._lanes_warned = False

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
                    error=describe(exc, 500),
                    retry_in_s=backoff,
                )
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, self.settings.consumer_max_backoff_seconds)
            finally:
                await self._close()

    async def _run_session(self, stop: asyncio.Event) -> None:
        self._consumer = AIOKafkaConsumer(
            **connection_options(self.settings),
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
            polled = await self._poll(self._consumer)
            if polled:
                await self._process_polled(polled, stop)
                for tp, records in polled.items():
                    self._processed[tp] = records[-1].offset + 1
            await self._commit()
            self._export_lag()

    def _export_lag(self) -> None:
        """The lag of each assigned partition, for the worker's metrics (every few seconds)."""
        consumer = self._consumer
        now = time.monotonic()
        if consumer is None or now < self._lag_at:
            return
        self._lag_at = now + 5.0
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            done = self._processed.get(tp, self._committed.get(tp))
            if end is not None and done is not None:
                CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(
                    max(end - done, 0)
                )

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

    def _check_lane_partitions(self) -> None:
        """Warn (once) when lanes run over topics of different partition counts: a member's
        events of one topic stay in one lane, in order, but not those of two topics."""
        consumer = self._consumer
        if consumer is None or self.settings.consumer_concurrency == 1 or self._lanes_warned:
            return
        counts = {t: len(consumer.partitions_for_topic(t) or ()) for t in self.topics}
        if len({n for n in counts.values() if n}) > 1:
            self._lanes_warned = True
            log.warning(
                "consumer_lanes_partition_counts_differ",
                group=self.group_id,
                lanes=self.settings.consumer_concurrency,
                partitions=counts,
                consequence="a member's events of different topics may run in different "
                "lanes at once, out of order with each other",
            )

    # -- one poll's records ------------------------------------------------------------------

    def _lane(self, tp: TopicPartition) -> int:
        width: int = max(1, self.settings.consumer_concurrency)
        return int(tp.partition) % width

    async def _poll(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """Up to a batch of records; with ``consumer_concurrency`` > 1, up to a batch for
        each lane (a poll mostly returns one partition's records: the other lanes are
        topped up from what the consumer has already fetched, without waiting)."""
        size = self.settings.consumer_batch_size
        batches = await consumer.getmany(timeout_ms=200, max_records=size)
        polled = {tp: records for tp, records in batches.items() if records}
        if not polled or self.settings.consumer_concurrency == 1:
            return polled
        busy = {self._lane(tp) for tp in polled}
        idle: dict[int, list[TopicPartition]] = {}
        for tp in consumer.assignment():
            if self._lane(tp) not in busy:
                idle.setdefault(self._lane(tp), []).append(tp)
        for partitions in idle.values():
            more = await consumer.getmany(*partitions, timeout_ms=0, max_records=size)
            polled.update((tp, records) for tp, records in more.items() if records)
        # a rebalance can run inside a poll: keep only the partitions still ours (the
        # records of one revoked meanwhile are read again by its next owner)
        assigned = consumer.assignment()
        return {tp: records for tp, records in polled.items() if tp in assigned}

    async def _process_polled(
        self, polled: dict[TopicPartition, list[ConsumerRecord[Any, Any]]], stop: asyncio.Event
    ) -> None:
        """A poll's records in ``consumer_concurrency`` transactions at once (one if 1).

        Each transaction takes whole partition numbers: the topics are keyed by member, so
        one member's events of one topic stay in one transaction, in order, and those of
        several topics too when the topics have the same partition count (else
        ``_check_lane_partitions`` warned at assignment).
        """
        self._request_ids = {}
        groups: dict[int, list[ConsumerRecord[Any, Any]]] = {}
        for tp in sorted(polled, key=lambda t: (t.partition, t.topic)):
            groups.setdefault(self._lane(tp), []).extend(polled[tp])
        if len(groups) == 1:
            await self._process_records(next(iter(groups.values())), stop)
            return
        async with asyncio.TaskGroup() as tasks:
            for records in groups.values():
                tasks.create_task(self._process_records(records, stop))

    async def _process_records(
        self, records: list[ConsumerRecord[Any, Any]], stop: asyncio.Event
    ) -> None:
        events: list[tuple[ConsumerRecord[Any, Any], CloudEvent]] = []
        for record in records:
            try:
                event = self._parse(record)
            except PoisonMessage as exc:
                await self._dead_letter(record, exc, attempts=1)
                continue
            events.append((record, event))
        self._request_ids.update(
            (e.id, v.decode("utf-8", "replace"))
            for r, e in events
            for k, v in (r.headers or ())
            if k == "x-request-id"
        )
        if not events:
            return
        started = time.perf_counter()
        if not await self._apply_batch(events, stop):
            for record, event in events:
                await self._apply_one_or_dead_letter(record, event, stop)
        HANDLER_SECONDS.labels(self.group_id).observe(time.perf_counter() - started)

    def _parse(self, record: ConsumerRecord[Any, Any]) -> CloudEvent:
        if record.value is None:
            raise PoisonMessage("empty record value (tombstone)")
        try:
            return CloudEvent.from_json_bytes(record.value)
        except (ValueError, ValidationError) as exc:
            raise PoisonMessage(f"not a CloudEvents envelope: {exc}") from exc

    async def _apply_batch(
        self, events: list[tuple[ConsumerRecord[Any, Any], CloudEvent]], stop: asyncio.Event
    ) -> bool:
        """The whole batch in one transaction, through any number of transient failures;
        False if it failed for another reason (then each event runs on its own)."""
        delay = self.settings.consumer_retry_backoff_seconds
        while True:
            try:
                await self._apply([e for _, e in events])
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    log.info("consumer_batch_failed_one_by_one", error=describe(exc, 500))
                    return False
                delay = await self._wait_out_transient(exc, stop, delay)

    async def _apply_one_or_dead_letter(
        self, record: ConsumerRecord[Any, Any], event: CloudEvent, stop: asyncio.Event
    ) -> None:
        attempts = 0
        delay = self.settings.consumer_retry_backoff_seconds
        while True:
            try:
                await self._apply([event])
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):  # not the message's fault: does not use up attempts
                    delay = await self._wait_out_transient(exc, stop, delay)
                    continue
                attempts += 1
                if attempts >= self.settings.consumer_max_attempts or never_succeeds(exc):
                    await self._dead_letter(record, exc, attempts=attempts, event=event)
                    return
                await sleep_or_stop(stop, delay)
                if stop.is_set():
                    raise asyncio.CancelledError from exc
                delay = min(delay * 2, self.settings.consumer_max_backoff_seconds)

    async def _wait_out_transient(
        self, exc: BaseException, stop: asyncio.Event, delay: float
    ) -> float:
        self.stats.transient_retries += 1
        CONSUMER_RETRIES.labels(self.group_id).inc()
        log.warning(
            "consumer_transient_failure_retrying",
            group=self.group_id,
            error=describe(exc, 500),
            retry_in_s=delay,
        )
        await sleep_or_stop(stop, delay)
        if stop.is_set():
            raise asyncio.CancelledError from exc
        return min(delay * 2, self.settings.consumer_max_backoff_seconds)

    # -- one transaction -------------------------------------------------------------------

    def wants(self, event_type: str) -> bool:
        """Whether this consumer does anything with the type (an erasure always: tombstone)."""
        return event_type in self.handlers or event_type == MEMBER_ERASED

    async def _claim(self, session: AsyncSession, events: list[CloudEvent]) -> list[CloudEvent]:
        """Record the ids in the inbox; the events not seen before, in order, each once."""
        result = await session.execute(
            _CLAIM,
            {
                "ids": [e.id for e in events],
                "types": [e.type for e in events],
                "sources": [e.source for e in events],
            },
        )
        fresh = {row[0] for row in result}
        out = []
        for event in events:
            if event.id in fresh:
                fresh.discard(event.id)  # the same id twice in one batch runs once
                out.append(event)
        return out

    async def _apply(self, events: list[CloudEvent]) -> None:
        relevant = [e for e in events if self.wants(e.type)]
        if not relevant:
            return
        async with self.sessionmaker() as session, session.begin():
            fresh = await self._claim(session, relevant)
            skipped = await self.apply_fresh(session, fresh)
        # counted once the transaction committed (a rolled-back batch is retried)
        applied = len(fresh) - skipped
        duplicates = len(relevant) - len(fresh)
        self.stats.processed += applied
        self.stats.duplicates += duplicates
        self.stats.erased_skipped += skipped
        for outcome, n in (("applied", applied), ("duplicate", duplicates), ("erased", skipped)):
            if n:
                CONSUMER_EVENTS.labels(self.group_id, outcome).inc(n)

    async def apply_fresh(self, session: AsyncSession, events: list[CloudEvent]) -> int:
        """Apply the events the inbox claimed (not seen before, in order) in the batch's
        transaction; the number skipped because their member is erased.

        An erasure records its tombstone before its handler and drops the member's
        pipeline rows after it; every later event about an erased member is skipped.
        A subclass overrides this to prepare set-based work before ``super().apply_fresh``
        and apply it after, and ``handle`` to collect events instead of applying them.
        """
        erased = await erased_among(
            session, self._erasure_key, {e.subject for e in events if e.subject}
        )
        skipped = 0
        for event in events:
            if event.type == MEMBER_ERASED and event.subject:
                await record_tombstone(session, self._erasure_key, event.subject)
            elif event.subject in erased:
                skipped += 1  # late, replayed or redelivered: nothing of theirs comes back
                continue
            await self.handle(session, event)
            if event.type == MEMBER_ERASED and event.subject:
                erased.add(event.subject)
                await forget_member(session, event.subject)
        return skipped

    async def handle(self, session: AsyncSession, event: CloudEvent) -> None:
        """One fresh event through its handler, with its ids in the log context."""
        handler = self.handlers.get(event.type)
        if handler is None:
            return
        structlog.contextvars.bind_contextvars(
            event_id=event.id,
            event_type=event.type,
            request_id=self._request_ids.get(event.id),
        )
        try:
            await handler(session, event)
        finally:
            structlog.contextvars.unbind_contextvars("event_id", "event_type", "request_id")

    # -- dead letters ------------------------------------------------------------------------

    async def _dead_letter(
        self,
        record: ConsumerRecord[Any, Any],
        exc: BaseException,
        *,
        attempts: int,
        event: CloudEvent | None = None,
    ) -> None:
        """Keep the record in ``dead_letters`` and send it to ``<topic>.dlq``; a failure of
        either (the database or the broker away) raises, and the record is read again."""
        assert self._producer is not None
        error = describe(exc)
        async with self.sessionmaker() as session, session.begin():
            await record_dead_letter(
                session,
                group=self.group_id,
                record=record,
                event_id=event.id if event else None,
                event_type=event.type if event else None,
                error=error,
                error_type=type(exc).__name__,
                attempts=attempts,
            )
        headers = list(record.headers or [])
        headers += [
            ("dlq-error", error.encode()),
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
        CONSUMER_EVENTS.labels(self.group_id, "dead_lettered").inc()
        log.error(
            "message_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            event_id=event.id if event else None,
            event_type=event.type if event else None,
            attempts=attempts,
            error=error[:500],
        )
