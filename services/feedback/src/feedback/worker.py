"""The feedback worker: the outbox relay (consumers and SLA jobs join as they are built)."""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.service_cli import Worker
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import FEEDBACK_EVENTS


def build_workers(
    settings: CommonSettings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Sequence[Worker]:
    return [OutboxRelay(settings, engine, topics=[FEEDBACK_EVENTS]).run]
