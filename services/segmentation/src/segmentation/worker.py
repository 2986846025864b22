"""The segmentation worker: consumes every service's events into profiles; relays its own."""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared.inbox import EventConsumer
from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.service_cli import Worker
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import FEEDBACK_EVENTS, POINTS_EVENTS, SEGMENTATION_EVENTS
from segmentation.profiles.handlers import HANDLERS


def build_consumer(
    settings: CommonSettings, sessionmaker: async_sessionmaker[AsyncSession]
) -> EventConsumer:
    return EventConsumer(
        settings, sessionmaker, topics=[POINTS_EVENTS, FEEDBACK_EVENTS], handlers=HANDLERS
    )


def build_workers(
    settings: CommonSettings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Sequence[Worker]:
    relay = OutboxRelay(settings, engine, topics=[SEGMENTATION_EVENTS])
    return [relay.run, build_consumer(settings, sessionmaker).run]
