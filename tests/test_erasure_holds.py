"""Erased stays erased, across services and over the broker.

A member with orders, an interaction, a complaint and a survey answer is erased through the
gateway. Then everything that could bring them back arrives: requests for their id, and
late events of every kind (an order, a refund, points expiring and maturing, an
interaction, a survey answer, a complaint), the way a broker replay or a slow producer
would deliver them. Afterwards no service holds a profile, a row or a word about them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from feedback.settings import FeedbackSettings
from feedback.worker import build_consumer as feedback_consumer
from loyalty_shared.contracts.points import OrderRefundedV1
from loyalty_shared.db import create_sessionmaker
from loyalty_shared.events import CloudEvent
from loyalty_shared.kafka import make_producer
from loyalty_shared.testing import background, eventually, start_group_at_end
from loyalty_shared.topics import FEEDBACK_EVENTS, POINTS_EVENTS
from points.settings import PointsSettings
from points.worker import build_consumer as points_consumer
from segmentation.settings import SegmentationSettings

OPS = {"Authorization": "Bearer test-ops-key"}


@pytest.fixture
async def engines(
    points_settings: PointsSettings,
    segmentation_settings: SegmentationSettings,
    feedback_settings: FeedbackSettings,
) -> AsyncIterator[dict[str, AsyncEngine]]:
    made = {
        "points": create_async_engine(points_settings.sqlalchemy_url()),
        "segmentation": create_async_engine(segmentation_settings.sqlalchemy_url()),
        "feedback": create_async_engine(feedback_settings.sqlalchemy_url()),
    }
    yield made
    for engine in made.values():
        await engine.dispose()


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def _events_about(engine: AsyncEngine, member: str) -> list[dict[str, Any]]:
    rows = await _rows(
        engine, "SELECT payload::text AS p FROM outbox WHERE key = :m ORDER BY id", m=member
    )
    return [orjson.loads(r.p) for r in rows]


def _again(envelope: dict[str, Any], type_: str | None = None, **data: Any) -> CloudEvent:
    """The same event delivered late (a new id: not a duplicate the inbox would drop)."""
    return CloudEvent.model_validate(
        {
            **envelope,
            "id": str(uuid.uuid4()),
            "type": type_ or envelope["type"],
            "data": {**envelope["data"], **data},
        }
    )


async def _produce(settings: PointsSettings, *records: tuple[str, CloudEvent]) -> None:
    producer = make_producer(settings, client_id="test-late-events")
    await producer.start()
    try:
        for topic, event in records:
            await producer.send_and_wait(
                topic, event.to_json_bytes(), key=(event.subject or "").encode()
            )
    finally:
        await producer.stop()


def _personal(member: str) -> dict[str, str]:
    """What the member told us (unique to this member, so a search finds nobody else's)."""
    tag = member.removeprefix("m-")
    return {
        "name": f"Li Lei {tag}",
        "email": f"li-{tag}@example.com",
        "address": f"{tag} Main St",
        "phone": f"138-{tag}",
    }


async def _build_up(client: httpx.AsyncClient, member: str) -> dict[str, str]:
    """A member every service knows something personal about."""
    me = _personal(member)
    enrolled = await client.post(
        "/v1/members", json={"member_id": member, "name": me["name"], "email": me["email"]}
    )
    assert enrolled.status_code == 201, enrolled.text
    order_id = f"o-{uuid.uuid4().hex[:12]}"
    now = datetime.now(UTC).isoformat()
    placed = await client.post(
        "/v1/orders",
        json={"order_id": order_id, "member_id": member, "amount": "100", "occurred_at": now},
    )
    assert placed.status_code == 201, placed.text
    review = await client.post(
        "/v1/interactions",
        json={
            "event_id": f"ev-{uuid.uuid4().hex}",
            "member_id": member,
            "type": "review",
            "occurred_at": now,
            "attributes": {"text": f"Deliver to {me['address']} please"},
        },
    )
    assert review.status_code == 202, review.text
    complaint = await client.post(
        "/v1/complaints",
        json={
            "member_id": member,
            "channel": "app",
            "category": "delivery",
            "description": f"Call me on {me['phone']}",
        },
    )
    assert complaint.status_code == 201, complaint.text
    survey = await client.post(
        "/v1/surveys",
        headers=OPS,
        json={
            "name": f"s-{uuid.uuid4().hex[:6]}",
            "questions": [
                {"id": "nps", "type": "nps", "text": "Recommend us?"},
                {"id": "why", "type": "text", "text": "Why?"},
            ],
        },
    )
    assert survey.status_code == 201, survey.text
    survey_id = survey.json()["id"]
    answered = await client.post(
        f"/v1/surveys/{survey_id}/responses",
        json={"member_id": member, "answers": {"nps": 3, "why": f"I live at {me['address']}"}},
    )
    assert answered.status_code == 201, answered.text
    return {"order_id": order_id, "survey_id": survey_id}


async def test_no_late_request_or_event_brings_an_erased_member_back(  # type: ignore[no-untyped-def]
    gateway_client: httpx.AsyncClient,
    pipeline,
    engines: dict[str, AsyncEngine],
    points_settings: PointsSettings,
    feedback_settings: FeedbackSettings,
) -> None:
    client = gateway_client
    member = f"m-{uuid.uuid4().hex[:10]}"
    suffix = uuid.uuid4().hex[:6]
    consumers = [
        feedback_consumer(
            feedback_settings,
            create_sessionmaker(engines["feedback"]),
            group_id=f"feedback-{suffix}",
        ),
        points_consumer(
            points_settings, create_sessionmaker(engines["points"]), group_id=f"points-{suffix}"
        ),
    ]
    # new groups, started where the topics end now (not at every event the suite made)
    await start_group_at_end(feedback_settings, f"feedback-{suffix}", consumers[0].topics)
    await start_group_at_end(points_settings, f"points-{suffix}", consumers[1].topics)
    async with background(*(c.run for c in consumers)):
        made = await _build_up(client, member)

        async def profiled() -> bool:
            return (await client.get(f"/v1/profiles/{member}", headers=OPS)).status_code == 200

        await eventually(profiled, timeout=60)
        # the events as they were published, to be delivered again once the member is gone
        published = await _events_about(engines["points"], member)
        published += await _events_about(engines["feedback"], member)
        by_type = {e["type"]: e for e in published}

        erased = await client.delete(f"/v1/members/{member}")
        assert erased.status_code == 202, erased.text

        async def gone_everywhere() -> bool:
            profile = await client.get(f"/v1/profiles/{member}", headers=OPS)
            feedback = await client.get(f"/v1/feedback/members/{member}/export")
            return profile.status_code == 404 and feedback.status_code == 404

        await eventually(gone_everywhere, timeout=60)
        await _late_requests(client, member, made)
        late = await _late_events(points_settings, member, by_type)

        by_service = {
            "segmentation": pipeline.consumer,
            "feedback": consumers[0],
            "points": consumers[1],
        }

        async def unseen() -> dict[str, list[str]]:
            """Per consumer, the late events of the types it takes not yet in its inbox."""
            ids = [e.id for _, e in late]
            missing: dict[str, list[str]] = {}
            for service, consumer in by_service.items():
                seen = await _rows(
                    engines[service],
                    "SELECT event_id FROM inbox WHERE event_id = ANY(:ids)",
                    ids=ids,
                )
                done = {r.event_id for r in seen}
                wanted = [e for t, e in late if t in consumer.topics and consumer.wants(e.type)]
                if left := [e.type for e in wanted if e.id not in done]:
                    missing[service] = left
            return missing

        async def all_seen() -> bool:
            return not await unseen()

        try:
            await eventually(all_seen, timeout=90)
        except AssertionError as exc:
            raise AssertionError(f"late events not consumed: {await unseen()}") from exc

    assert (await client.get(f"/v1/profiles/{member}", headers=OPS)).status_code == 404
    assert (await client.get(f"/v1/members/{member}")).status_code == 404
    assert (await client.get(f"/v1/members/{member}/export")).status_code == 404
    await _nothing_held(engines, member)


async def _late_requests(client: httpx.AsyncClient, member: str, made: dict[str, str]) -> None:
    now = datetime.now(UTC).isoformat()
    refused = {
        "enrol": await client.post("/v1/members", json={"member_id": member}),
        "order": await client.post(
            "/v1/orders",
            json={
                "order_id": f"o-{uuid.uuid4().hex[:12]}",
                "member_id": member,
                "amount": "10",
                "occurred_at": now,
            },
        ),
        "interaction": await client.post(
            "/v1/interactions",
            json={
                "event_id": f"ev-{uuid.uuid4().hex}",
                "member_id": member,
                "type": "share",
                "occurred_at": now,
                "attributes": {},
            },
        ),
        "complaint": await client.post(
            "/v1/complaints",
            json={"member_id": member, "channel": "app", "category": "x", "description": "again"},
        ),
        "survey answer": await client.post(
            f"/v1/surveys/{made['survey_id']}/responses",
            json={"member_id": member, "answers": {"nps": 10}},
        ),
    }
    for what, response in refused.items():
        assert response.status_code == 409, (what, response.text)
        assert response.json()["type"].endswith("/member-erased"), (what, response.text)
    # the shop refunds an order placed before the erasure: the kept books follow, silently
    refund = await client.post(
        f"/v1/orders/{made['order_id']}/refunds",
        json={"refund_id": f"r-{uuid.uuid4().hex[:10]}", "amount": "40"},
    )
    assert refund.status_code == 201, refund.text


async def _late_events(
    settings: PointsSettings, member: str, by_type: dict[str, dict[str, Any]]
) -> list[tuple[str, CloudEvent]]:
    earned = by_type["loyalty.points.earned.v1"]
    late = [
        (POINTS_EVENTS, _again(by_type["loyalty.order.recorded.v1"], order_id=f"o-{uuid.uuid4()}")),
        (POINTS_EVENTS, _again(earned)),
        (POINTS_EVENTS, _again(earned, "loyalty.points.expired.v1", lots=[])),
        (POINTS_EVENTS, _again(earned, "loyalty.points.matured.v1", lots=[])),
        (POINTS_EVENTS, _again(by_type["loyalty.interaction.recorded.v1"])),
        (
            POINTS_EVENTS,
            OrderRefundedV1.sample(
                member_id=member, order_id="o-x", refund_id="r-x", amount="1.00"
            ).event(member),
        ),
        (FEEDBACK_EVENTS, _again(by_type["loyalty.survey.completed.v1"])),
        (FEEDBACK_EVENTS, _again(by_type["loyalty.complaint.opened.v1"])),
    ]
    await _produce(settings, *late)
    return late


async def _nothing_held(engines: dict[str, AsyncEngine], member: str) -> None:
    """No table of any service holds the member's id (the erasure event itself aside)."""
    for service, engine in engines.items():
        tables = await _rows(
            engine,
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name IN ('member_id', 'key', 'subject')",
        )
        for row in tables:
            found = await _rows(
                engine,
                f'SELECT count(*) AS n FROM "{row.table_name}" WHERE "{row.column_name}" = :m'
                + (
                    " AND event_type <> 'loyalty.member.erased.v1'"
                    if row.table_name == "outbox"
                    else ""
                ),
                m=member,
            )
            assert found[0].n == 0, (service, row.table_name, row.column_name)
        # nor a word of what they wrote, in any text or JSON column
        for needle in _personal(member).values():
            hits = await _rows(
                engine,
                "SELECT table_name FROM information_schema.columns c WHERE table_schema = "
                "'public' AND data_type IN ('text', 'character varying', 'jsonb')",
            )
            for table in {h.table_name for h in hits}:
                found = await _rows(
                    engine,
                    f'SELECT count(*) AS n FROM "{table}" t WHERE t::text LIKE :needle',
                    needle=f"%{needle}%",
                )
                assert found[0].n == 0, (service, table, needle)
