"""Caps that hold per member (docs/security.md): goodwill points per local month, interactions
per local day, and the size of what an interaction carries into the event stream."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from loyalty_shared.contracts.feedback import ComplaintGoodwillGrantedV1
from points.actions.handlers import GOODWILL_GRANTED, build_handlers
from points.settings import PointsSettings
from points.testing import enrol, outbox_events, replica, sql


async def goodwill(
    settings: PointsSettings, member: str, points: int, at: datetime | None = None
) -> None:
    """Feedback's goodwill grant, handled as the worker's consumer handles it."""
    grant = f"g-{uuid.uuid4().hex[:10]}"
    event = ComplaintGoodwillGrantedV1.sample(
        grant_id=grant, member_id=member, points=points, reason="SLA breach"
    ).event(member, event_id=grant, time=at)
    engine = create_async_engine(settings.sqlalchemy_url())
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            await build_handlers(settings)[GOODWILL_GRANTED](session, event)
    finally:
        await engine.dispose()


async def available(client: httpx.AsyncClient, member: str) -> int:
    return int((await client.get(f"/v1/members/{member}")).json()["balance"]["available"])


async def test_goodwill_is_capped_per_member_and_month(
    points_client: httpx.AsyncClient, points_settings: PointsSettings, points_db: str
) -> None:
    cap = 1000
    settings = points_settings.model_copy(update={"goodwill_monthly_cap": cap})
    member = await enrol(points_client, timezone="UTC")
    other = await enrol(points_client, timezone="UTC")
    grants = [cap // 2, cap // 2 - 100, 300, 50]
    for points in grants:
        await goodwill(settings, member, points)
    await goodwill(settings, other, 300)
    assert await available(points_client, member) == cap  # 300 cut to 100, then nothing
    assert await available(points_client, other) == 300
    rows = await sql(
        points_db,
        "SELECT points, details FROM ledger_entries WHERE member_id = :m ORDER BY id",
        m=member,
    )
    assert [r.points for r in rows] == [cap // 2, cap // 2 - 100, 100]
    assert [(r.details["requested"], r.details["reason"]) for r in rows] == [
        (cap // 2, "granted"),
        (cap // 2 - 100, "granted"),
        (300, "capped_monthly"),
    ]
    earned = [p["data"] for t, p in await outbox_events(points_db, member) if "earned" in t]
    assert [e["points"] for e in earned] == [cap // 2, cap // 2 - 100, 100]
    assert earned[-1]["breakdown"]["reason"] == "capped_monthly"


@pytest.fixture
async def limited(points_settings: PointsSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The service with a daily limit of 3 interactions and 1 KB of attributes."""
    settings = points_settings.model_copy(
        update={"interactions_daily_limit": 3, "interaction_attributes_max_bytes": 1024}
    )
    async with replica(settings) as client:
        yield client


def interaction(member: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"ev-{uuid.uuid4().hex[:12]}",
        "member_id": member,
        "type": "page_view",
        "occurred_at": datetime.now(UTC).isoformat(),
        **extra,
    }


async def test_interactions_per_member_and_day_are_limited(
    limited: httpx.AsyncClient, points_db: str
) -> None:
    member = await enrol(limited)
    sent = [interaction(member) for _ in range(4)]
    answers = [await limited.post("/v1/interactions", json=body) for body in sent]
    assert [a.status_code for a in answers] == [202] * 4
    assert [a.json()["recorded"] for a in answers] == [True, True, True, False]
    assert answers[3].json()["reason"] == "capped_interactions_daily"
    assert answers[3].json()["points"] == 0
    # the first three replay as recorded; the fourth was not stored
    replay = await limited.post("/v1/interactions", json=sent[0])
    assert replay.json() == answers[0].json()
    stored = await sql(
        points_db, "SELECT count(*) AS n FROM interactions WHERE member_id = :m", m=member
    )
    assert stored[0].n == 3
    published = [t for t, _ in await outbox_events(points_db, member)]
    assert published.count("loyalty.interaction.recorded.v1") == 3
    other = await enrol(limited)
    assert (await limited.post("/v1/interactions", json=interaction(other))).json()["recorded"]


async def test_attributes_are_bounded_in_size_and_depth(
    points_client: httpx.AsyncClient, limited: httpx.AsyncClient, points_db: str
) -> None:
    member = await enrol(points_client)
    huge = interaction(member, attributes={"blob": "x" * 1_500_000})  # the finding: 1.5 MB
    answer = await points_client.post("/v1/interactions", json=huge)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["body.attributes"]
    nested: Any = "leaf"
    for _ in range(40):
        nested = {"a": nested}
    deep = await points_client.post("/v1/interactions", json=interaction(member, attributes=nested))
    assert deep.status_code == 422
    assert [e["field"] for e in deep.json()["errors"]] == ["body.attributes"]
    # the default allows 16 KB; this service is configured for 1 KB
    middle = interaction(member, attributes={"blob": "y" * 4000})
    assert (await points_client.post("/v1/interactions", json=middle)).status_code == 202
    over = interaction(member, attributes={"blob": "y" * 4000})
    refused = await limited.post("/v1/interactions", json=over)
    assert refused.status_code == 422 and "1024" in refused.json()["errors"][0]["message"]
    published = [t for t, _ in await outbox_events(points_db, member)]
    assert published.count("loyalty.interaction.recorded.v1") == 1
