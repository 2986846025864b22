"""The points worker: the outbox relay, the feedback consumer and the periodic jobs
(maturing, expiry, tier evaluation, birthday bonuses)."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared.inbox import EventConsumer
from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.runtime import sleep_or_stop
from loyalty_shared.service_cli import Worker
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import FEEDBACK_EVENTS, POINTS_EVENTS
from points.consumers.handlers import build_handlers
from points.jobs.service import run_ledger_jobs
from points.jobs.tiers import birthday_bonuses, evaluate_tiers
from points.settings import PointsSettings

log = structlog.get_logger("points.worker")


def ledger_jobs_worker(
    settings: PointsSettings, sessionmaker: async_sessionmaker[AsyncSession]
) -> Worker:
    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                now = datetime.now(UTC)
                await run_ledger_jobs(sessionmaker, settings, now)
                await evaluate_tiers(sessionmaker, settings, now)
                await birthday_bonuses(sessionmaker, settings, now)
            except Exception as exc:  # a database hiccup: try again next round
                log.exception("ledger_jobs_failed", error=f"{type(exc).__name__}: {exc}")
            await sleep_or_stop(stop, settings.ledger_jobs_interval_seconds)

    return run


def build_workers(
    settings: CommonSettings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Sequence[Worker]:
    relay = OutboxRelay(settings, engine, topics=[POINTS_EVENTS])
    workers: list[Worker] = [relay.run]
    if isinstance(settings, PointsSettings):
        workers.append(build_consumer(settings, sessionmaker).run)
        workers.append(ledger_jobs_worker(settings, sessionmaker))
    return workers


def build_consumer(
    settings: PointsSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    group_id: str | None = None,
) -> EventConsumer:
    """Survey completions and complaint goodwill grants from the feedback service."""
    return EventConsumer(
        settings,
        sessionmaker,
        topics=[FEEDBACK_EVENTS],
        handlers=build_handlers(settings),
        group_id=group_id,
    )
