"""The points worker's consumer of loyalty.feedback.events over the real broker: the survey
bonus once per response, complaint goodwill once per grant."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from loyalty_shared.contracts import EventPayload
from loyalty_shared.contracts.feedback import ComplaintGoodwillGrantedV1, SurveyCompletedV1
from loyalty_shared.kafka import ensure_topics, make_producer
from loyalty_shared.testing import background, eventually
from loyalty_shared.topics import FEEDBACK_EVENTS
from points.settings import PointsSettings
from points.testing import enrol
from points.worker import build_consumer

Send = Callable[..., Awaitable[str]]


@pytest.fixture
async def send(earning_settings: PointsSettings) -> AsyncIterator[Send]:
    await ensure_topics(earning_settings, [FEEDBACK_EVENTS])
    engine = create_async_engine(earning_settings.sqlalchemy_url())
    consumer = build_consumer(
        earning_settings,
        async_sessionmaker(engine, expire_on_commit=False),
        group_id=f"points-test-{uuid.uuid4().hex[:8]}",
    )
    producer = make_producer(earning_settings, client_id="points-test-producer")
    await producer.start()

    async def produce(model: type[EventPayload], member_id: str, **data: Any) -> str:
        """An event of ``model`` (its example with ``data``) about ``member_id``."""
        event_id = data.pop("event_id", None)
        event = model.sample(member_id=member_id, **data).event(member_id, event_id=event_id)
        await producer.send_and_wait(FEEDBACK_EVENTS, event.to_json_bytes(), key=member_id.encode())
        return event.id

    try:
        async with background(consumer.run):
            yield produce
    finally:
        await producer.stop()
        await engine.dispose()


async def available(client: httpx.AsyncClient, member: str) -> int:
    return int((await client.get(f"/v1/members/{member}")).json()["balance"]["available"])


async def test_survey_and_goodwill_are_credited_once(
    earning_client: httpx.AsyncClient, send: Send
) -> None:
    member = await enrol(earning_client)
    response_id = f"resp-{uuid.uuid4().hex[:10]}"
    survey = {"survey_id": "s-1", "response_id": response_id, "nps": 9}
    await send(SurveyCompletedV1, member, **survey, event_id=response_id)
    await send(SurveyCompletedV1, member, **survey, event_id=response_id)  # redelivered
    await send(SurveyCompletedV1, member, **survey)  # re-published, new event id
    grant = {"grant_id": f"g-{uuid.uuid4().hex[:10]}", "points": 300, "reason": "late"}
    await send(ComplaintGoodwillGrantedV1, member, **grant, event_id=grant["grant_id"])
    await send(ComplaintGoodwillGrantedV1, member, **grant)
    # a marker after them all: once it is credited, the earlier events were handled
    marker = {"grant_id": f"g-{uuid.uuid4().hex[:10]}", "points": 1}
    await send(ComplaintGoodwillGrantedV1, member, **marker)

    async def settled() -> int | None:
        value = await available(earning_client, member)
        return value if value % 2 == 1 else None  # the marker's single point arrived

    assert await eventually(settled, timeout=30) == 20 + 300 + 1  # survey rule: 20 points
