"""Lanes (``consumer_concurrency`` > 1) only for a consumer class that says it is lane-safe."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import EventConsumer
from loyalty_shared.settings import CommonSettings


class KeepsBatchOnInstance(EventConsumer):
    """Collects a batch on the instance: two lanes at once would share it."""

    async def apply_fresh(self, session: AsyncSession, events: list[CloudEvent]) -> int:
        self.batch = list(events)
        return await super().apply_fresh(session, events)


class KeepsBatchInSession(EventConsumer):
    lane_safe = True

    async def apply_fresh(self, session: AsyncSession, events: list[CloudEvent]) -> int:
        session.info["batch"] = list(events)
        return await super().apply_fresh(session, events)


class AddsToASafeOne(KeepsBatchInSession):
    """Says nothing of its own: what it adds may keep state, so it is not lane-safe."""


def _build(cls: type[EventConsumer], lanes: int) -> EventConsumer:
    settings = CommonSettings(environment="test", consumer_concurrency=lanes)
    return cls(settings, async_sessionmaker(), topics=["t"], handlers={})


@pytest.mark.parametrize("cls", [KeepsBatchOnInstance, AddsToASafeOne])
def test_a_class_not_declared_lane_safe_is_refused_in_lanes(cls: type[EventConsumer]) -> None:
    assert cls.lane_safe is False
    with pytest.raises(ValueError, match=rf"{cls.__name__} is not lane-safe"):
        _build(cls, 2)
    assert _build(cls, 1).settings.consumer_concurrency == 1  # one lane: fine


@pytest.mark.parametrize("cls", [EventConsumer, KeepsBatchInSession])
def test_a_lane_safe_class_runs_in_lanes(cls: type[EventConsumer]) -> None:
    assert cls.lane_safe is True
    assert _build(cls, 2).settings.consumer_concurrency == 2
