"""Pipeline health: what a stalled event stream looks like, one look away.

Per service: the outbox backlog and the age of its oldest unsent row, parked rows, open
dead letters, each consumed partition's lag, and each periodic job's last run. The same
facts come out two ways:

- ``pipeline_status``: read from the database and the broker on request, for
  ``GET /v1/ops/pipeline`` (the gateway asks every service and answers with all three);
- Prometheus metrics in the worker process (``PIPELINE_REGISTRY``, served on
  ``<PREFIX>_WORKER_METRICS_PORT``): the relay, the consumers and the jobs update them as
  they work, and ``PipelineMonitor`` refreshes the database-side gauges.

Jobs run through ``Jobs.step``: on one replica at a time (``loyalty_shared.leases``); a
transient failure (a deadlock, a lost connection) is retried with backoff until it
succeeds; any other failure is logged and recorded, and the job runs again at its next
turn. Every outcome lands in ``job_runs``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from sqlalchemy import Column, DateTime, Float, Integer, MetaData, Table, Text, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared import dead_letters
from loyalty_shared.failures import describe, is_transient
from loyalty_shared.kafka import connection_options
from loyalty_shared.leases import Leases
from loyalty_shared.runtime import sleep_or_stop
from loyalty_shared.settings import CommonSettings

log = structlog.get_logger("loyalty.pipeline")

T = TypeVar("T")

PIPELINE_REGISTRY = CollectorRegistry()

OUTBOX_BACKLOG = Gauge(
    "loyalty_outbox_backlog", "Outbox rows not yet sent", ["service"], registry=PIPELINE_REGISTRY
)
OUTBOX_OLDEST_AGE = Gauge(
    "loyalty_outbox_oldest_unsent_age_seconds",
    "Age of the oldest unsent outbox row (0 when none)",
    ["service"],
    registry=PIPELINE_REGISTRY,
)
OUTBOX_PARKED = Gauge(
    "loyalty_outbox_parked_open",
    "Outbox rows the broker refused for good, set aside (open)",
    ["service"],
    registry=PIPELINE_REGISTRY,
)
DEAD_LETTERS_OPEN = Gauge(
    "loyalty_dead_letters_open",
    "Records this service's consumers dead-lettered (open)",
    ["service"],
    registry=PIPELINE_REGISTRY,
)
OUTBOX_PUBLISHED = Counter(
    "loyalty_outbox_published_total",
    "Outbox rows the broker acknowledged",
    ["service"],
    registry=PIPELINE_REGISTRY,
)
OUTBOX_PARKED_TOTAL = Counter(
    "loyalty_outbox_parked_total",
    "Outbox rows parked because the broker refused them for good",
    ["service", "error_type"],
    registry=PIPELINE_REGISTRY,
)
CONSUMER_LAG = Gauge(
    "loyalty_consumer_lag",
    "Records between the consumer's position and the partition's end",
    ["group", "topic", "partition"],
    registry=PIPELINE_REGISTRY,
)
CONSUMER_EVENTS = Counter(
    "loyalty_consumer_events_total",
    "Events seen by a consumer, by outcome (applied, duplicate, erased_member, dead_lettered)",
    ["group", "outcome"],
    registry=PIPELINE_REGISTRY,
)
CONSUMER_RETRIES = Counter(
    "loyalty_consumer_transient_retries_total",
    "Batches retried because of a transient failure (deadlock, lost connection, timeout)",
    ["group"],
    registry=PIPELINE_REGISTRY,
)
HANDLER_SECONDS = Histogram(
    "loyalty_consumer_batch_seconds",
    "Time to apply one polled batch of a partition (one transaction)",
    ["group"],
    registry=PIPELINE_REGISTRY,
)
JOB_LAST_SUCCESS = Gauge(
    "loyalty_job_last_success_timestamp_seconds",
    "When the job last succeeded (Unix time)",
    ["service", "job"],
    registry=PIPELINE_REGISTRY,
)
JOB_DURATION = Gauge(
    "loyalty_job_last_duration_seconds",
    "How long the job's last successful run took",
    ["service", "job"],
    registry=PIPELINE_REGISTRY,
)
JOB_FAILURES = Counter(
    "loyalty_job_failures_total",
    "Job runs that failed, by kind (transient: retried; error: wait for the next turn)",
    ["service", "job", "kind"],
    registry=PIPELINE_REGISTRY,
)


def job_runs_table(metadata: MetaData) -> Table:
    return Table(
        "job_runs",
        metadata,
        Column("job", Text, primary_key=True),
        Column("last_started_at", DateTime(timezone=True), nullable=True),
        Column("last_succeeded_at", DateTime(timezone=True), nullable=True),
        Column("last_duration_seconds", Float, nullable=True),
        Column("last_failed_at", DateTime(timezone=True), nullable=True),
        Column("last_error", Text, nullable=True),
        Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    )


_RECORD_SUCCESS = text(
    "INSERT INTO job_runs (job, last_started_at, last_succeeded_at, last_duration_seconds, "
    "consecutive_failures) VALUES (:job, :started, now(), :duration, 0) "
    "ON CONFLICT (job) DO UPDATE SET last_started_at = excluded.last_started_at, "
    "last_succeeded_at = excluded.last_succeeded_at, "
    "last_duration_seconds = excluded.last_duration_seconds, consecutive_failures = 0"
)
_RECORD_FAILURE = text(
    "INSERT INTO job_runs (job, last_started_at, last_failed_at, last_error, "
    "consecutive_failures) VALUES (:job, :started, now(), :error, 1) "
    "ON CONFLICT (job) DO UPDATE SET last_started_at = excluded.last_started_at, "
    "last_failed_at = excluded.last_failed_at, last_error = excluded.last_error, "
    "consecutive_failures = job_runs.consecutive_failures + 1"
)


class Jobs:
    """Runs a service's periodic job steps: on one replica at a time (``Leases``), with
    retries, and a record of each outcome. ``close()`` gives the jobs up (at shutdown)."""

    def __init__(
        self,
        service: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.max_backoff_seconds = max_backoff_seconds
        engine = sessionmaker.kw["bind"]
        self.leases = Leases(engine, service)

    async def step(
        self, name: str, run: Callable[[], Awaitable[T]], stop: asyncio.Event
    ) -> T | None:
        """Run ``run`` once to success; None if another replica holds the job, if it failed
        for a non-transient reason, or if ``stop`` was set while it waited to retry."""
        delay = 0.2
        while not stop.is_set():
            started = datetime.now(UTC)
            clock = time.monotonic()
            try:
                if not await self.leases.hold(name):
                    return None  # another replica runs this job
                result = await run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                transient = is_transient(exc)
                JOB_FAILURES.labels(self.service, name, "transient" if transient else "error").inc()
                await self._record(_RECORD_FAILURE, job=name, started=started, error=describe(exc))
                if not transient:
                    log.exception("job_failed", job=name, error=describe(exc, 500))
                    return None
                log.warning("job_retrying", job=name, error=describe(exc, 500), retry_in_s=delay)
                await sleep_or_stop(stop, delay)
                delay = min(delay * 2, self.max_backoff_seconds)
                continue
            duration = time.monotonic() - clock
            JOB_LAST_SUCCESS.labels(self.service, name).set(time.time())
            JOB_DURATION.labels(self.service, name).set(duration)
            await self._record(_RECORD_SUCCESS, job=name, started=started, duration=duration)
            return result
        return None

    async def close(self) -> None:
        await self.leases.release_all()

    async def _record(self, statement: Any, **params: Any) -> None:
        try:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(statement, params)
        except Exception as exc:  # the record is for people; never fail the job over it
            log.warning("job_record_failed", job=params.get("job"), error=describe(exc, 300))


# -- status on request ---------------------------------------------------------------------


async def _outbox_facts(conn: AsyncConnection) -> dict[str, Any]:
    row = (
        await conn.execute(
            text(
                "SELECT count(*) AS backlog, "
                "COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) AS oldest "
                "FROM outbox WHERE sent_at IS NULL"
            )
        )
    ).one()
    return {"backlog": int(row.backlog), "oldest_unsent_age_seconds": round(float(row.oldest), 3)}


async def _jobs(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT * FROM job_runs ORDER BY job"))
    return [dict(r._mapping) for r in rows]


async def consumer_lag(
    settings: CommonSettings, group: str, topics: Sequence[str]
) -> list[dict[str, Any]]:
    """Each consumed partition: the group's committed offset, the end, and the lag.

    The committed offsets are read by a consumer of the group that never subscribes (so it
    never joins the group nor starts a rebalance): OffsetFetch through the coordinator, as
    the consumers themselves read them. (The admin client's ListConsumerGroupOffsets is not
    served by the embedded dev broker.)
    """
    probe = AIOKafkaConsumer(
        **connection_options(settings),
        group_id=group,
        enable_auto_commit=False,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    await probe.start()
    try:
        await probe.topics()  # fetches metadata
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(probe.partitions_for_topic(topic) or ())
        ]
        ends = await probe.end_offsets(partitions) if partitions else {}
        committed = {tp: await probe.committed(tp) for tp in partitions}
    finally:
        await probe.stop()
    out = []
    for tp in partitions:
        offset = committed.get(tp)
        position = offset if offset is not None and offset >= 0 else 0
        end = ends.get(tp, 0)
        out.append(
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "committed": position,
                "end": end,
                "lag": max(end - position, 0),
            }
        )
    return out


async def pipeline_status(
    settings: CommonSettings,
    engine: AsyncEngine,
    *,
    consumer_group: str | None,
    consumes: Sequence[str],
) -> dict[str, Any]:
    """What ``GET /v1/ops/pipeline`` answers for this service."""
    async with engine.connect() as conn:
        outbox = await _outbox_facts(conn)
        open_items = await dead_letters.counts(conn)
        jobs = await _jobs(conn)
    consumer: dict[str, Any] = {"group": consumer_group, "topics": list(consumes)}
    if consumer_group and consumes:
        try:
            partitions = await asyncio.wait_for(
                consumer_lag(settings, consumer_group, consumes),
                timeout=settings.kafka_request_timeout_ms / 1000,
            )
            consumer["partitions"] = partitions
            consumer["lag"] = sum(p["lag"] for p in partitions)
        except Exception as exc:  # the broker is down: say so, the rest still answers
            consumer["error"] = describe(exc, 300)
    return {
        "service": settings.service_name,
        "outbox": {**outbox, "parked": open_items["parked"]},
        "dead_letters": open_items["dead_letters"],
        "consumer": consumer,
        "jobs": jobs,
        "checked_at": datetime.now(UTC),
    }


# -- the worker's metrics --------------------------------------------------------------------


class PipelineMonitor:
    """Refreshes the database-side gauges of the worker's metrics every few seconds."""

    def __init__(self, settings: CommonSettings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine

    async def refresh(self) -> None:
        service = self.settings.service_name
        async with self.engine.connect() as conn:
            outbox = await _outbox_facts(conn)
            open_items = await dead_letters.counts(conn)
        OUTBOX_BACKLOG.labels(service).set(outbox["backlog"])
        OUTBOX_OLDEST_AGE.labels(service).set(outbox["oldest_unsent_age_seconds"])
        OUTBOX_PARKED.labels(service).set(open_items["parked"])
        DEAD_LETTERS_OPEN.labels(service).set(open_items["dead_letters"])

    async def run(self, stop: asyncio.Event) -> None:
        port = self.settings.worker_metrics_port
        if port:
            start_http_server(port, addr=self.settings.host, registry=PIPELINE_REGISTRY)
            log.info("worker_metrics_serving", port=port)
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # the database is away: the gauges keep their last value
                log.debug("pipeline_monitor_failed", error=describe(exc, 300))
            await sleep_or_stop(stop, self.settings.pipeline_monitor_seconds)
