"""The points worker: the outbox relay (and, as they arrive, consumers and jobs)."""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.service_cli import Worker
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import POINTS_EVENTS


def build_workers(
    settings: CommonSettings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Sequence[Worker]:
    relay = OutboxRelay(settings, engine, topics=[POINTS_EVENTS])
    return [relay.run]
