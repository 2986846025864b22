"""Cross-service fixtures: the three services, their relays and the segmentation consumer."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from feedback.settings import FeedbackSettings
from loyalty_shared.db import create_sessionmaker
from loyalty_shared.devstack.broker import free_port
from loyalty_shared.devstack.stack import Stack, StackConfig
from loyalty_shared.inbox import EventConsumer
from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.testing import background, start_group_at_end
from loyalty_shared.topics import FEEDBACK_EVENTS, POINTS_EVENTS
from points.settings import PointsSettings
from segmentation.settings import SegmentationSettings
from segmentation.worker import build_consumer


class Pipeline:
    def __init__(self, relays: list[OutboxRelay], consumer: EventConsumer) -> None:
        self.relays = relays
        self.consumer = consumer


@pytest.fixture(scope="session")
async def pipeline(
    points_settings: PointsSettings,
    segmentation_settings: SegmentationSettings,
    feedback_settings: FeedbackSettings,
    gateway_app: FastAPI,
) -> AsyncIterator[Pipeline]:
    """Points and feedback relays publish; the segmentation consumer folds events in."""
    engines = [
        create_async_engine(points_settings.sqlalchemy_url()),
        create_async_engine(feedback_settings.sqlalchemy_url()),
        create_async_engine(segmentation_settings.sqlalchemy_url()),
    ]
    relays = [
        OutboxRelay(points_settings, engines[0], topics=[POINTS_EVENTS]),
        OutboxRelay(feedback_settings, engines[1], topics=[FEEDBACK_EVENTS]),
    ]
    consumer = build_consumer(segmentation_settings, create_sessionmaker(engines[2]))
    # The services' own tests before these share the databases and run no relay: their
    # events wait unsent in the outboxes (thousands in a full run), and the topics hold what
    # other tests published. They are not this pipeline's: folded in first, they made the
    # cross-service tests wait on a backlog late in a full run (and time out under load).
    for engine in engines[:2]:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM outbox WHERE sent_at IS NULL"))
    await start_group_at_end(segmentation_settings, consumer.group_id, consumer.topics)
    async with background(*(r.run for r in relays), consumer.run):
        yield Pipeline(relays, consumer)
    for engine in engines:
        await engine.dispose()


@pytest.fixture(scope="session")
def replicated_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The `make run REPLICAS=2` stack on free ports: real processes, two of every API and
    worker behind one gateway (started once: test_devstack_e2e, then test_faults)."""
    config = StackConfig(
        data_dir=Path(tmp_path_factory.mktemp("devstack")),
        gateway_port=free_port(),
        ports={name: free_port() for name in ("points", "segmentation", "feedback", "webhooks")},
        kafka_port=free_port(),
        fast_postgres=True,
        replicas=2,
        extra_env={
            f"{p}_LOG_LEVEL": "WARNING" for p in ("POINTS", "SEGMENTATION", "FEEDBACK", "GATEWAY")
        },
    )
    stack = Stack(config)
    try:
        stack.start(timeout=300)
        yield stack
    finally:
        stack.stop()
    assert not stack.procs
