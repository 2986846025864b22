"""The points worker: the outbox relay, the feedback consumer and the periodic jobs
(maturing, expiry, tier evaluation, birthday bonuses)."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared.inbox import EventConsumer
from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.pipeline import Jobs
from loyalty_shared.runtime import sleep_or_stop
from loyalty_shared.service_cli import Worker
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import FEEDBACK_EVENTS, POINTS_EVENTS
from points.actions.handlers import build_handlers
from points.actions.jobs import birthday_bonuses
from points.ledger.jobs import run_ledger_jobs
from points.settings import PointsSettings
from points.tiers.jobs import evaluate_tiers


async def _as_of_now(
    step: Callable[[async_sessionmaker[AsyncSession], PointsSettings, datetime], Awaitable[Any]],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: PointsSettings,
) -> Any:
    return await step(sessionmaker, settings, datetime.now(UTC))


def ledger_jobs_worker(
    settings: PointsSettings, sessionmaker: async_sessionmaker[AsyncSession]
) -> Worker:
    """Maturing and expiry, tier evaluation, birthday bonuses: each step retried through
    transient failures and recorded in ``job_runs`` (``loyalty_shared.pipeline.Jobs``)."""
    jobs = Jobs(settings.service_name, sessionmaker)

    async def run(stop: asyncio.Event) -> None:
        steps = (
            ("maturing-and-expiry", run_ledger_jobs),
            ("tier-evaluation", evaluate_tiers),
            ("birthday-bonuses", birthday_bonuses),
        )
        try:
            while not stop.is_set():
                for name, step in steps:
                    # "now" when the step (or its retry) starts
                    await jobs.step(name, partial(_as_of_now, step, sessionmaker, settings), stop)
                await sleep_or_stop(stop, settings.ledger_jobs_interval_seconds)
        finally:
            await jobs.close()  # another replica takes the jobs over at once

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
