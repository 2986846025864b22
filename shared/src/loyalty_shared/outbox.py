"""Transactional outbox: events are rows written with the state change; a relay publishes them.

Guarantees (see docs/events.md):
- an event is written in the same transaction as the change it describes, so a
  committed change always has its event and a rolled-back one never does;
- the relay publishes in id order, in batches, keyed by member id, and marks
  rows sent only after the broker acknowledged them; a crash between the two
  re-publishes (duplicates are possible, loss is not);
- it wakes on LISTEN/NOTIFY, polls as a fallback, and keeps retrying while the
  broker is down. Only the first write after the relay went idle sends the
  NOTIFY (a flag in ``outbox_relay_state``): a transaction that NOTIFYs takes a
  database-wide lock at commit, and a NOTIFY in every checkout transaction cut
  durable commit throughput ~25x in our pgbench measurement;
- sent rows are kept for ``outbox_retention_hours``. When the relay finds that
  the broker lost its data (the embedded broker is memory-only), it publishes
  every retained row again; the idempotent consumers make the replay harmless.
- only one relay per database publishes at a time (a Postgres advisory lock),
  so a member's events are never reordered by two relays racing;
- a row the broker refuses for good (larger than its limit, an invalid topic) is moved
  to ``outbox_parked`` (``loyalty_shared.dead_letters``: listed, replayed, discarded)
  and the rows behind it go out: one bad row never stops the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from loyalty_shared.dead_letters import PARK_SQL
from loyalty_shared.events import CloudEvent
from loyalty_shared.failures import describe, refused_for_good
from loyalty_shared.kafka import connection_options, ensure_topics, make_producer
from loyalty_shared.pipeline import OUTBOX_PARKED_TOTAL, OUTBOX_PUBLISHED
from loyalty_shared.request_context import current_request_id
from loyalty_shared.runtime import sleep_or_stop
from loyalty_shared.settings import CommonSettings

log = structlog.get_logger("loyalty.outbox")

NOTIFY_CHANNEL = "loyalty_outbox"


def outbox_table(metadata: MetaData) -> Table:
    Table(
        "outbox_relay_state",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("idle", Boolean, nullable=False, server_default=text("true")),
    )
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", Text, nullable=False, unique=True),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True), nullable=True),
        Column("kafka_partition", Integer, nullable=True),
        Column("kafka_offset", BigInteger, nullable=True),
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
        # sent rows only: the prune and the replay look for those (unsent rows are in
        # ix_outbox_unsent); an entry for every unsent row's NULL cost each insert
        Index("ix_outbox_sent_at", "sent_at", postgresql_where=text("sent_at IS NOT NULL")),
    )


# DDL the migrations run after creating the table: a statement-level trigger
# that wakes the relay, but only when the relay said it is idle (see above).
# A write that reads idle=false (the relay is busy, or another writer already
# woke it) does no NOTIFY and takes no lock.
OUTBOX_NOTIFY_DDL = (
    """
    CREATE TABLE IF NOT EXISTS outbox_relay_state (
        id integer CONSTRAINT pk_outbox_relay_state PRIMARY KEY,
        idle boolean NOT NULL DEFAULT true
    )
    """,
    "INSERT INTO outbox_relay_state (id, idle) VALUES (1, true) ON CONFLICT DO NOTHING",
    f"""
    CREATE OR REPLACE FUNCTION loyalty_outbox_notify() RETURNS trigger AS $$
    BEGIN
        IF (SELECT idle FROM outbox_relay_state WHERE id = 1) THEN
            UPDATE outbox_relay_state SET idle = false WHERE id = 1 AND idle;
            IF FOUND THEN
                PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
            END IF;
        END IF;
        RETURN NULL;
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION loyalty_outbox_notify()
    """,
)
OUTBOX_NOTIFY_DROP_DDL = (
    "DROP TRIGGER IF EXISTS outbox_notify ON outbox",
    "DROP FUNCTION IF EXISTS loyalty_outbox_notify()",
    "DROP TABLE IF EXISTS outbox_relay_state",
)


def outbox_row(topic: str, event: CloudEvent) -> dict[str, Any]:
    headers: dict[str, str] = {"ce_type": event.type}
    request_id = current_request_id()
    if request_id:
        headers["x-request-id"] = request_id
    return {
        "event_id": event.id,
        "topic": topic,
        "key": event.key,
        "event_type": event.type,
        "payload": event.model_dump(mode="json"),
        "headers": headers,
    }


async def enqueue(
    session: AsyncSession | AsyncConnection, table: Table, topic: str, *events: CloudEvent
) -> None:
    """Write events to the outbox inside the caller's transaction."""
    if events:
        await session.execute(table.insert(), [outbox_row(topic, e) for e in events])


class OutboxRelay:
    """Publishes outbox rows to Kafka. Run ``run(stop)`` as a task or its own process."""

    def __init__(
        self,
        settings: CommonSettings,
        engine: AsyncEngine,
        *,
        topics: list[str],
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.topics = topics
        self.name = name or settings.service_name
        self.epoch_topic = f"loyalty.outbox-epoch.{self.name}"
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._probe: AIOKafkaConsumer | None = None
        self._next_check = 0.0
        self._next_prune = 0.0
        self.published = 0
        self.replays = 0
        self.parked = 0  # rows the broker refused for good, moved to outbox_parked
        self.failures = 0  # broker or database errors the relay recovered from

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._run_leader(stop)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                log.warning(
                    "outbox_relay_retrying",
                    relay=self.name,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=backoff,
                )
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await self._close_clients()

    async def _run_leader(self, stop: asyncio.Event) -> None:
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            lock_key = f"loyalty_outbox_relay:{self.name}"
            got = await driver.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_key)
            if not got:
                log.info("outbox_relay_standby", relay=self.name)
                await sleep_or_stop(stop, 2.0)
                return

            def _notified(*_args: object) -> None:
                self._wake.set()

            def _lost(*_args: object) -> None:
                # The LISTEN session is gone, and with it the advisory lock: wake the
                # loop so that it starts over on a new connection.
                self._wake.set()

            driver.add_termination_listener(_lost)
            await driver.add_listener(NOTIFY_CHANNEL, _notified)
            try:
                await self._start_clients()
                self._next_check = 0.0  # check the broker's epoch before the first publish
                log.info("outbox_relay_started", relay=self.name)
                await self._loop(stop, driver)
            finally:
                driver.remove_termination_listener(_lost)
                if not driver.is_closed():
                    try:
                        await driver.remove_listener(NOTIFY_CHANNEL, _notified)
                        await driver.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_key)
                    except Exception as exc:  # connection may be gone already
                        log.debug("outbox_relay_unlock_failed", error=str(exc))
                if driver.is_closed():
                    # never hand a dead connection back to the pool the engine shares
                    await conn.invalidate()

    async def _loop(self, stop: asyncio.Event, listen_conn: Any) -> None:
        while not stop.is_set():
            if listen_conn.is_closed():
                raise ConnectionError("the relay's LISTEN connection was closed")
            now = time.monotonic()
            if now >= self._next_check:
                await self._check_broker_epoch()
                self._next_check = now + self.settings.outbox_broker_check_seconds
            if now >= self._next_prune:
                await self._prune()
                self._next_prune = now + 60.0
            self._wake.clear()
            sent = await self._publish_pending()
            if sent > 0:
                if sent < self.settings.outbox_batch_size:
                    # let the next few events gather instead of a round trip per event
                    await sleep_or_stop(stop, self.settings.outbox_linger_seconds)
                continue
            # Nothing left: tell writers to wake us, then look once more for a
            # write that committed before it could see the flag.
            await self._announce_idle()
            if await self._has_unsent():
                continue
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self.settings.outbox_poll_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
                stopper.cancel()

    async def _announce_idle(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text("UPDATE outbox_relay_state SET idle = true WHERE id = 1 AND NOT idle")
            )

    async def _has_unsent(self) -> bool:
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT EXISTS (SELECT 1 FROM outbox WHERE sent_at IS NULL)")
            )
        return bool(found)

    async def _start_clients(self) -> None:
        self._producer = make_producer(self.settings, client_id=f"{self.name}-relay")
        await self._producer.start()
        self._probe = AIOKafkaConsumer(
            **connection_options(self.settings),
            client_id=f"{self.name}-relay-probe",
            enable_auto_commit=False,
            request_timeout_ms=self.settings.kafka_request_timeout_ms,
        )
        await self._probe.start()

    async def _close_clients(self) -> None:
        for client in (self._producer, self._probe):
            if client is not None:
                try:
                    await client.stop()
                except Exception as exc:
                    log.debug("kafka_client_stop_failed", error=str(exc))
        self._producer = None
        self._probe = None

    async def _check_broker_epoch(self) -> None:
        """Detect a broker that lost its data; if so, re-publish every retained row.

        The relay keeps one marker message in ``loyalty.outbox-epoch.<name>``.
        A broker that still has the marker still has what we published since
        it was written. A broker without it was restarted empty (or is new).
        """
        assert self._probe is not None and self._producer is not None
        tp = TopicPartition(self.epoch_topic, 0)
        topics = await self._probe.topics()
        present = False
        if self.epoch_topic in topics:
            ends = await self._probe.end_offsets([tp])
            present = ends.get(tp, 0) >= 1
        if present:
            return
        await ensure_topics(self.settings, [*self.topics, self.epoch_topic])
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text(
                    "UPDATE outbox SET sent_at = NULL, kafka_partition = NULL, kafka_offset = NULL "
                    "WHERE sent_at IS NOT NULL"
                )
            )
        replayed = result.rowcount or 0
        await self._producer.send_and_wait(
            self.epoch_topic,
            orjson.dumps({"relay": self.name, "at": time.time(), "replayed": replayed}),
            key=self.name.encode(),
            partition=0,
        )
        if replayed:
            self.replays += 1
            log.warning(
                "outbox_broker_lost_data_replaying",
                relay=self.name,
                replayed_events=replayed,
            )
        else:
            log.info("outbox_broker_epoch_marked", relay=self.name)

    async def _publish_pending(self) -> int:
        """Send the next unsent rows; mark the acknowledged prefix sent and park the rows the
        broker refused for good (too large, ...), so that no row blocks the ones behind it.
        Returns how many rows left the queue."""
        assert self._producer is not None
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, event_id, topic, key, payload::text AS payload, "
                        "headers::text AS headers FROM outbox WHERE sent_at IS NULL "
                        "ORDER BY id LIMIT :n"
                    ),
                    {"n": self.settings.outbox_batch_size},
                )
            ).all()
        if not rows:
            return 0
        outcomes = await self._send_all(rows)
        sent: list[tuple[int, int, int]] = []
        parked: list[tuple[Any, BaseException]] = []
        failure: BaseException | None = None
        # Only the unbroken prefix: after a transient failure the rest is sent again
        # (possibly twice, never lost), in order.
        for row, outcome in zip(rows, outcomes, strict=False):
            if isinstance(outcome, BaseException):
                if not refused_for_good(outcome):
                    failure = outcome
                    break
                parked.append((row, outcome))
                continue
            sent.append((row.id, outcome.partition, outcome.offset))
        await self._mark(sent, parked)
        if failure is not None:
            self._next_check = 0.0
            raise failure
        return len(sent) + len(parked)

    async def _send_all(self, rows: Sequence[Any]) -> list[Any]:
        """Each row's broker acknowledgement or exception, in order; stops at the first
        exception that is not a refusal of that one record."""
        assert self._producer is not None
        pending: list[Any] = []
        for row in rows:
            headers = [(k, str(v).encode()) for k, v in orjson.loads(row.headers).items()]
            try:
                pending.append(
                    await self._producer.send(
                        row.topic,
                        value=row.payload.encode(),
                        key=row.key.encode(),
                        headers=headers,
                    )
                )
            except Exception as exc:
                pending.append(exc)
                if not refused_for_good(exc):
                    break
        futures = [p for p in pending if not isinstance(p, BaseException)]
        results = iter(await asyncio.gather(*futures, return_exceptions=True))
        return [p if isinstance(p, BaseException) else next(results) for p in pending]

    async def _mark(
        self, sent: list[tuple[int, int, int]], parked: list[tuple[Any, BaseException]]
    ) -> None:
        if not sent and not parked:
            return
        async with self.engine.begin() as conn:
            if sent:
                ids, partitions, offsets = (list(col) for col in zip(*sent, strict=True))
                await conn.execute(
                    text(
                        "UPDATE outbox SET sent_at = now(), kafka_partition = v.p, "
                        "kafka_offset = v.o FROM unnest(CAST(:ids AS bigint[]), "
                        "CAST(:ps AS int[]), CAST(:os AS bigint[])) AS v(id, p, o) "
                        "WHERE outbox.id = v.id"
                    ),
                    {"ids": ids, "ps": partitions, "os": offsets},
                )
            for row, exc in parked:
                await conn.execute(
                    PARK_SQL, {"id": row.id, "err": describe(exc), "errtype": type(exc).__name__}
                )
        self.published += len(sent)
        self.parked += len(parked)
        if sent:
            OUTBOX_PUBLISHED.labels(self.name).inc(len(sent))
        for row, exc in parked:
            OUTBOX_PARKED_TOTAL.labels(self.name, type(exc).__name__).inc()
            log.error(
                "outbox_row_parked",
                relay=self.name,
                event_id=row.event_id,
                topic=row.topic,
                payload_bytes=len(row.payload),
                error=describe(exc, 500),
            )

    async def _prune(self) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text(
                    "DELETE FROM outbox WHERE sent_at IS NOT NULL "
                    "AND sent_at < now() - make_interval(secs => :secs)"
                ),
                {"secs": self.settings.outbox_retention_hours * 3600},
            )
        if result.rowcount:
            log.info("outbox_pruned", relay=self.name, rows=result.rowcount)
