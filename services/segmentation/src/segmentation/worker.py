"""The segmentation worker: consumes every service's events into profiles, relays its own
events, and runs the daily recompute."""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared.inbox import EventConsumer
from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.service_cli import Worker
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import FEEDBACK_EVENTS, POINTS_EVENTS, SEGMENTATION_EVENTS
from segmentation.analytics.feedback_facts import with_feedback_facts
from segmentation.analytics.jobs import DailyRecompute
from segmentation.consumer import BatchingEventConsumer
from segmentation.profiles.handlers import BATCH_HANDLERS, HANDLERS
from segmentation.settings import SegmentationSettings


def build_consumer(
    settings: CommonSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    group_id: str | None = None,
) -> EventConsumer:
    return BatchingEventConsumer(
        settings,
        sessionmaker,
        topics=[POINTS_EVENTS, FEEDBACK_EVENTS],
        handlers=with_feedback_facts(HANDLERS),
        batch_handlers=BATCH_HANDLERS,
        group_id=group_id,
    )


def build_workers(
    settings: CommonSettings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Sequence[Worker]:
    relay = OutboxRelay(settings, engine, topics=[SEGMENTATION_EVENTS])
    workers: list[Worker] = [relay.run, build_consumer(settings, sessionmaker).run]
    if isinstance(settings, SegmentationSettings):
        workers.append(DailyRecompute(settings, sessionmaker).run)
    return workers
