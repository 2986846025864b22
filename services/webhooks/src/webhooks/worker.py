"""The webhooks worker: the consumer that makes deliveries, the sender, and housekeeping."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared.pipeline import Jobs
from loyalty_shared.runtime import sleep_or_stop
from loyalty_shared.service_cli import Worker
from loyalty_shared.settings import CommonSettings
from webhooks.deliveries import metrics
from webhooks.deliveries.handlers import WebhookConsumer
from webhooks.deliveries.sender import Sender
from webhooks.settings import WebhooksSettings

log = structlog.get_logger("webhooks.worker")

_LAG = text(
    """
    SELECT s.id,
           count(d.id) AS pending,
           COALESCE(EXTRACT(EPOCH FROM now() - min(d.created_at)), 0) AS lag
    FROM webhook_subscriptions s
    LEFT JOIN webhook_deliveries d ON d.subscription_id = s.id AND d.status = 'pending'
    GROUP BY s.id
    """
)


def _webhooks_settings(settings: CommonSettings) -> WebhooksSettings:
    if isinstance(settings, WebhooksSettings):
        return settings
    return WebhooksSettings(**settings.model_dump())


async def housekeeping(
    settings: WebhooksSettings, sessionmaker: async_sessionmaker[AsyncSession], now: datetime
) -> int:
    """Each subscription's lag and backlog into the metrics; the log (delivered and failed
    deliveries) and the inbox pruned after ``delivery_retention_hours``. Returns rows pruned."""
    cutoff = now - timedelta(hours=settings.delivery_retention_hours)
    async with sessionmaker() as session, session.begin():
        rows = (await session.execute(_LAG)).all()
        pruned = await session.execute(
            text(
                "DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'failed') "
                "AND finished_at < :cutoff"
            ),
            {"cutoff": cutoff},
        )
        await session.execute(
            text("DELETE FROM inbox WHERE processed_at < :cutoff"), {"cutoff": cutoff}
        )
    seen = set()
    for row in rows:
        seen.add(row.id)
        metrics.PENDING.labels(row.id).set(row.pending)
        metrics.LAG_SECONDS.labels(row.id).set(float(row.lag))
    for gauge in (metrics.PENDING, metrics.LAG_SECONDS):
        for labels in list(gauge._metrics):  # a deleted subscription's series goes
            if labels[0] not in seen:
                gauge.remove(*labels)
    return int(getattr(pruned, "rowcount", 0) or 0)


class Housekeeping:
    def __init__(
        self, settings: WebhooksSettings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.jobs = Jobs(settings.service_name, sessionmaker)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                pruned = await self.jobs.step(
                    "webhooks-housekeeping",
                    lambda: housekeeping(self.settings, self.sessionmaker, datetime.now(UTC)),
                    stop,
                )
                if pruned:
                    log.info("webhook_log_pruned", deliveries=pruned)
                await sleep_or_stop(stop, self.settings.housekeeping_seconds)
        finally:
            await self.jobs.close()


def build_workers(
    settings: CommonSettings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Sequence[Worker]:
    webhooks_settings = _webhooks_settings(settings)
    wake = asyncio.Event()
    return [
        WebhookConsumer(webhooks_settings, sessionmaker, wake=wake).run,
        Sender(webhooks_settings, sessionmaker, wake=wake).run,
        Housekeeping(webhooks_settings, sessionmaker).run,
    ]
