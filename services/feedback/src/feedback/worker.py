"""The feedback worker: outbox relay, the tier/segment consumer, and the periodic SLA job."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from feedback.db import idempotency_keys
from feedback.followups.service import schedule_monthly
from feedback.members.handlers import build_handlers
from feedback.orders.handlers import HANDLERS as ORDER_HANDLERS
from feedback.orders.handlers import OrdersBatchingConsumer
from feedback.settings import FeedbackSettings
from feedback.sla.service import detect_breaches
from loyalty_shared import idempotency
from loyalty_shared.inbox import EventConsumer
from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.pipeline import Jobs
from loyalty_shared.runtime import sleep_or_stop
from loyalty_shared.service_cli import Worker
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import FEEDBACK_EVENTS, POINTS_EVENTS, SEGMENTATION_EVENTS

log = structlog.get_logger("feedback.worker")


def _feedback_settings(settings: CommonSettings) -> FeedbackSettings:
    if isinstance(settings, FeedbackSettings):
        return settings
    return FeedbackSettings(**settings.model_dump())


def build_consumer(
    settings: CommonSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    group_id: str | None = None,
) -> EventConsumer:
    """Tier changes, orders, refunds, erasures (points); segments, lifecycle (segmentation)."""
    return OrdersBatchingConsumer(
        settings,
        sessionmaker,
        topics=[POINTS_EVENTS, SEGMENTATION_EVENTS],
        handlers={**build_handlers(_feedback_settings(settings)), **ORDER_HANDLERS},
        group_id=group_id,
    )


async def run_periodic_jobs(
    settings: FeedbackSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    now: datetime,
    *,
    monthly: bool = True,
) -> tuple[int, int]:
    """One pass: SLA breaches and (if ``monthly``, hourly) this month's high-value follow-ups
    and the pruning of old Idempotency-Keys."""
    async with sessionmaker() as session, session.begin():
        breached = await detect_breaches(session, now)
    created = 0
    if monthly:
        async with sessionmaker() as session, session.begin():
            created = await schedule_monthly(session, settings, now)
        async with sessionmaker() as session, session.begin():
            await idempotency.prune(
                session,
                idempotency_keys,
                now - timedelta(hours=settings.idempotency_retention_hours),
            )
    return len(breached), created


class PeriodicJobs:
    """SLA breaches every ``breach_check_seconds``; this month's high-value follow-ups and
    the pruning of old Idempotency-Keys once an hour. Each step is retried through transient
    failures and recorded in ``job_runs`` (``loyalty_shared.pipeline.Jobs``)."""

    def __init__(
        self, settings: FeedbackSettings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.jobs = Jobs(settings.service_name, sessionmaker)
        # the monthly follow-ups are scheduled once per hour, not on every breach pass
        self._monthly_at: datetime | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._loop(stop)
        finally:
            await self.jobs.close()  # another replica takes the jobs over at once

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = datetime.now(UTC)
            due = self._monthly_at is None or now - self._monthly_at >= timedelta(hours=1)
            done = await self.jobs.step(
                "sla-breaches" if not due else "sla-breaches-and-monthly-follow-ups",
                partial(run_periodic_jobs, self.settings, self.sessionmaker, now, monthly=due),
                stop,
            )
            if done is not None:
                breached, monthly = done
                if due:
                    self._monthly_at = now
                if breached or monthly:
                    log.info("periodic_jobs", breaches=breached, monthly_follow_ups=monthly)
            await sleep_or_stop(stop, self.settings.breach_check_seconds)


def build_workers(
    settings: CommonSettings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Sequence[Worker]:
    feedback_settings = _feedback_settings(settings)
    return [
        OutboxRelay(settings, engine, topics=[FEEDBACK_EVENTS]).run,
        build_consumer(feedback_settings, sessionmaker).run,
        PeriodicJobs(feedback_settings, sessionmaker).run,
    ]
