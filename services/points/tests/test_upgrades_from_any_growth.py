"""Upgrades at once from any growth (DOMAIN, Tiers: "upgrade at once when the threshold is
crossed"): every credit that adds growth value moves the member up in its own transaction,
with one ``tier.changed``: check-ins, interactions, the survey bonus from the feedback
consumer, the birthday bonus, both sides of a referral, adjustments when the ladder counts
them. Credits that add no growth value (goodwill, a negative adjustment) or not enough
leave the tier alone.

The ladder here (a database of its own) has multiplier 1 everywhere, so a member's growth
value is exactly the points credited: Silver at 100, Gold at 250, Diamond at 100,000; and
every earning rule counts toward growth, with no caps that these tests reach.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from loyalty_shared.contracts import CONTRACTS
from loyalty_shared.kafka import ensure_topics, make_producer
from loyalty_shared.testing import (
    Infra,
    asgi_client,
    background,
    eventually,
    migrated_database,
    running_app,
    settings_overrides,
)
from loyalty_shared.topics import FEEDBACK_EVENTS
from points.actions import flows
from points.actions.jobs import birthday_bonuses
from points.actions.schemas import CheckInIn
from points.main import create_app
from points.settings import PointsSettings
from points.testing import SERVICE_DIR, enrol, import_history, order, outbox_events, sql
from points.worker import build_consumer

TIER_CHANGED = "loyalty.tier.changed.v1"
LADDER: dict[str, Any] = {
    "tiers": [
        {"code": "regular", "name": "Regular", "threshold": 0},
        {"code": "silver", "name": "Silver", "threshold": 100},
        {"code": "gold", "name": "Gold", "threshold": 250},
        {"code": "diamond", "name": "Diamond", "threshold": 100_000},
    ],
    "growth_point_types": ["purchase", "action", "adjustment"],
}
# every rule counts toward growth; caps high enough for these tests
RULES = [
    {"action": action, "points": points, "daily_cap": None, "monthly_cap": None}
    | {"enabled": True, "counts_toward_growth": True}
    for action, points in (
        ("check_in", 5),
        ("review", 10),
        ("survey", 20),
        ("birthday", 200),
        ("referral_referrer", 100),
        ("referral_new_member", 50),
    )
]


@dataclass
class Env:
    client: httpx.AsyncClient
    db: str
    settings: PointsSettings
    sessionmaker: async_sessionmaker[AsyncSession]


@pytest.fixture(scope="module")
async def env(infra: Infra) -> AsyncIterator[Env]:
    db = await migrated_database(infra, "points_upgrades", SERVICE_DIR)
    settings = PointsSettings(**settings_overrides(infra, db))
    app = create_app(settings)
    engine = create_async_engine(settings.sqlalchemy_url())
    async with running_app(app), asgi_client(app) as client:
        assert (await client.put("/v1/tiers", json=LADDER)).status_code == 200
        rules = await client.put("/v1/earning-rules", json={"rules": RULES})
        assert rules.status_code == 200, rules.text
        yield Env(client, db, settings, async_sessionmaker(engine, expire_on_commit=False))
    await engine.dispose()


async def member_with_growth(env: Env, growth: int, **extra: Any) -> str:
    """A member enrolled now with ``growth`` growth value (one order), still Regular below 100."""
    member = await enrol(env.client, **extra)
    if growth:
        placed = await env.client.post("/v1/orders", json=order(member, str(growth)))
        assert placed.status_code == 201, placed.text
    return member


async def status(env: Env, member: str) -> dict[str, Any]:
    response = await env.client.get(f"/v1/members/{member}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def tier_changes(env: Env, member: str) -> list[dict[str, Any]]:
    return [p["data"] for t, p in await outbox_events(env.db, member) if t == TIER_CHANGED]


async def assert_upgraded_once(
    env: Env,
    member: str,
    to: str,
    growth: int,
    reason: str,
    *,
    upgraded_at_growth: int | None = None,
) -> None:
    """The status shows the new tier and ``growth`` right away, and one ``tier.changed``
    says so (with the growth value of the credit that crossed: ``growth`` by default)."""
    now = await status(env, member)
    assert (now["tier"], now["growth_value"]) == (to, growth), now
    changes = await tier_changes(env, member)
    assert [(c["from_tier"], c["to_tier"], c["direction"]) for c in changes] == [
        ("regular", to, "up")
    ], changes
    assert changes[0]["reason"] == reason
    assert changes[0]["growth_value"] == (upgraded_at_growth or growth)


def interaction(member: str, type_: str = "review") -> dict[str, Any]:
    return {
        "event_id": f"ev-{uuid.uuid4().hex[:12]}",
        "member_id": member,
        "type": type_,
        "occurred_at": datetime.now(UTC).isoformat(),
        "attributes": {},
    }


# ---------------------------------------------------------------------------- actions


async def test_a_check_in_crossing_a_threshold_upgrades_at_once(env: Env) -> None:
    member = await member_with_growth(env, 95)
    checked = await env.client.post(f"/v1/members/{member}/check-ins")
    assert checked.status_code == 201, checked.text
    await assert_upgraded_once(env, member, "silver", 100, "action")


async def test_an_interaction_crossing_a_threshold_upgrades_at_once(env: Env) -> None:
    member = await member_with_growth(env, 95)
    reviewed = await env.client.post("/v1/interactions", json=interaction(member))
    assert reviewed.status_code == 202 and reviewed.json()["points"] == 10, reviewed.text
    await assert_upgraded_once(env, member, "silver", 105, "action")
    # the next credit, still below Gold, changes nothing more
    again = await env.client.post("/v1/interactions", json=interaction(member))
    assert again.json()["points"] == 10
    assert (await status(env, member))["tier"] == "silver"
    assert len(await tier_changes(env, member)) == 1


async def test_a_credit_that_does_not_cross_leaves_the_tier(env: Env) -> None:
    member = await member_with_growth(env, 90)
    assert (await env.client.post(f"/v1/members/{member}/check-ins")).status_code == 201
    now = await status(env, member)
    assert (now["tier"], now["growth_value"]) == ("regular", 95)
    assert now["next_tier"]["growth_value_missing"] == 5
    assert await tier_changes(env, member) == []


async def test_a_birthday_bonus_crossing_two_thresholds_skips_a_level_with_one_event(
    env: Env,
) -> None:
    today = datetime.now(UTC)
    born = today.date().replace(year=1992)  # a leap year: any day of today's calendar
    member = await member_with_growth(env, 95, birthday=born.isoformat(), timezone="UTC")
    credited = await birthday_bonuses(env.sessionmaker, env.settings, today, member_ids=[member])
    assert credited == 1
    await assert_upgraded_once(env, member, "gold", 295, "action")


async def test_referral_bonuses_upgrade_both_sides(env: Env) -> None:
    referrer = await member_with_growth(env, 0)
    code = (await env.client.post("/v1/members", json={"member_id": referrer})).json()
    newcomer = await enrol(env.client, referral_code=code["referral_code"])
    body = order(newcomer, "60")
    first = await env.client.post("/v1/orders", json=body)
    assert first.status_code == 201, first.text
    # the referral bonus (50) takes the newcomer over 100: its order's answer says so too
    assert (first.json()["tier"], first.json()["tier_changed"]) == ("silver", True)
    await assert_upgraded_once(env, newcomer, "silver", 110, "action")
    await assert_upgraded_once(env, referrer, "silver", 100, "action")
    # the stored answer is what a retry of the order gets
    retried = await env.client.post("/v1/orders", json=body)
    assert retried.json() == first.json()


async def test_an_order_upgrades_on_the_growth_value_the_member_sees(env: Env) -> None:
    """A refund inside the window of an order from outside it leaves the window's sum below
    zero: the status shows 0, and an order upgrades on that sum plus its own growth."""
    member = await enrol(env.client)
    old = order(member, "90", datetime.now(UTC) - timedelta(days=400))
    await import_history(env.client, old)
    refund = await env.client.post(
        f"/v1/orders/{old['order_id']}/refunds",
        json={"refund_id": f"r-{uuid.uuid4().hex[:10]}", "amount": "90"},
    )
    assert refund.status_code == 201, refund.text
    placed = await env.client.post("/v1/orders", json=order(member, "150"))
    assert placed.status_code == 201, placed.text
    now = await status(env, member)
    assert (now["growth_value"], now["next_tier"]["growth_value_missing"]) == (60, 40)
    assert (placed.json()["tier"], placed.json()["tier_changed"]) == ("regular", False)
    assert now["tier"] == "regular" and await tier_changes(env, member) == []


# ---------------------------------------------------------------------------- adjustments


async def adjust(env: Env, member: str, points: int) -> httpx.Response:
    return await env.client.post(
        f"/v1/members/{member}/adjustments",
        json={"points": points, "reason": "service recovery"},
        headers={"X-Operator-Id": "op-1", "Idempotency-Key": uuid.uuid4().hex},
    )


async def test_an_adjustment_counting_toward_growth_upgrades_at_once(env: Env) -> None:
    member = await member_with_growth(env, 60)
    added = await adjust(env, member, 45)
    assert added.status_code == 201, added.text
    await assert_upgraded_once(env, member, "silver", 105, "adjustment")
    # taking points back is a debit: it takes points, not growth value, and nobody goes down
    taken = await adjust(env, member, -45)
    assert taken.status_code == 201, taken.text
    now = await status(env, member)
    assert (now["tier"], now["growth_value"], now["balance"]["available"]) == ("silver", 105, 60)
    assert len(await tier_changes(env, member)) == 1


async def test_an_adjustment_adds_no_growth_where_the_ladder_does_not_count_it(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    """The seeded ladder counts purchases and actions only."""
    member = await enrol(earning_client)
    added = await earning_client.post(
        f"/v1/members/{member}/adjustments",
        json={"points": 5000, "reason": "service recovery"},
        headers={"X-Operator-Id": "op-1", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert added.status_code == 201, added.text
    now = (await earning_client.get(f"/v1/members/{member}")).json()
    assert (now["tier"], now["growth_value"], now["balance"]["available"]) == ("regular", 0, 5000)
    assert [t for t, _ in await outbox_events(earning_db, member) if t == TIER_CHANGED] == []


# ---------------------------------------------------------------------------- the feedback consumer

Send = Callable[..., Awaitable[str]]


@pytest.fixture
async def send(env: Env) -> AsyncIterator[Send]:
    await ensure_topics(env.settings, [FEEDBACK_EVENTS])
    consumer = build_consumer(
        env.settings, env.sessionmaker, group_id=f"points-test-{uuid.uuid4().hex[:8]}"
    )
    producer = make_producer(env.settings, client_id="points-test-producer")
    await producer.start()

    async def produce(type_: str, member_id: str, data: dict[str, Any]) -> str:
        # the producer's model (its example with ``data``): a shape feedback publishes
        event = CONTRACTS[type_].sample(member_id=member_id, **data).event(member_id)
        await producer.send_and_wait(FEEDBACK_EVENTS, event.to_json_bytes(), key=member_id.encode())
        return event.id

    try:
        async with background(consumer.run):
            yield produce
    finally:
        await producer.stop()


async def test_the_survey_bonus_upgrades_and_goodwill_never_does(env: Env, send: Send) -> None:
    """Over the real broker: the survey rule counts toward growth here; goodwill is
    compensation, never growth value (docs/points-ledger.md), however much it credits."""
    surveyed = await member_with_growth(env, 85)
    compensated = await member_with_growth(env, 99)
    await send("loyalty.survey.completed.v1", surveyed, {"response_id": uuid.uuid4().hex})
    grant = {"grant_id": f"g-{uuid.uuid4().hex[:10]}", "points": 500, "reason": "late"}
    await send("loyalty.complaint.goodwill_granted.v1", compensated, grant)

    async def both_credited() -> bool:
        a, b = await status(env, surveyed), await status(env, compensated)
        return bool(a["balance"]["available"] == 105 and b["balance"]["available"] == 599)

    await eventually(both_credited, timeout=30)
    await assert_upgraded_once(env, surveyed, "silver", 105, "action")
    now = await status(env, compensated)
    assert (now["tier"], now["growth_value"]) == ("regular", 99)
    assert await tier_changes(env, compensated) == []


# ---------------------------------------------------------------------------- one transaction, once


async def test_the_upgrade_is_written_in_the_credits_own_transaction(env: Env) -> None:
    member = await member_with_growth(env, 95)
    async with env.sessionmaker() as session:
        await session.begin()
        await flows.check_in(session, env.settings, None, member, CheckInIn())
        # inside the credit's transaction, before it commits
        seen = await session.execute(
            text("SELECT tier FROM members WHERE member_id = :m"), {"m": member}
        )
        assert seen.scalar_one() == "silver"
        await session.rollback()
    # rolled back with the credit: no tier, no event, no points
    now = await status(env, member)
    assert (now["tier"], now["growth_value"]) == ("regular", 95)
    assert await tier_changes(env, member) == []


async def _someone_waits_for_a_lock(db: str) -> bool:
    rows = await sql(
        db,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return bool(rows[0][0])


@pytest.mark.parametrize("second", ["interaction", "order"])
async def test_a_credit_that_waited_for_an_upgrade_does_not_upgrade_again(
    env: Env, second: str
) -> None:
    """A check-in upgrades the member and holds its transaction open; a second credit of the
    same member (an interaction, or a checkout) that crosses too waits for it, then finds
    the member already Silver: one ``tier.changed`` in all."""
    member = await member_with_growth(env, 95)
    async with env.sessionmaker() as session, session.begin():
        await flows.check_in(session, env.settings, None, member, CheckInIn())
        if second == "interaction":
            request = env.client.post("/v1/interactions", json=interaction(member))
        else:
            request = env.client.post("/v1/orders", json=order(member, "10"))
        waiting = asyncio.ensure_future(request)
        await eventually(lambda: _someone_waits_for_a_lock(env.db), timeout=30)
    answer = await waiting
    assert answer.status_code in (201, 202), answer.text
    # the check-in crossed (at 100); the second credit found the member Silver
    await assert_upgraded_once(env, member, "silver", 95 + 5 + 10, "action", upgraded_at_growth=100)
    if second == "order":
        assert (answer.json()["tier"], answer.json()["tier_changed"]) == ("silver", False)


async def test_simultaneous_credits_crossing_a_threshold_upgrade_once(env: Env) -> None:
    member = await member_with_growth(env, 95)
    answers = await asyncio.gather(
        *(env.client.post("/v1/interactions", json=interaction(member)) for _ in range(6)),
        env.client.post(f"/v1/members/{member}/check-ins"),
        env.client.post("/v1/orders", json=order(member, "7")),
    )
    assert all(a.status_code in (201, 202) for a in answers), [a.text for a in answers]
    now = await status(env, member)
    assert (now["tier"], now["growth_value"]) == ("silver", 95 + 60 + 5 + 7)
    changes = await tier_changes(env, member)
    assert [(c["from_tier"], c["to_tier"]) for c in changes] == [("regular", "silver")]


async def test_an_old_member_crossing_from_a_past_credit_is_upgraded_as_of_that_credit(
    env: Env,
) -> None:
    """A check-in dated yesterday counts in the window ending then, like an order."""
    member = await member_with_growth(env, 95)
    await sql(
        env.db,
        "UPDATE members SET enrolled_at = now() - interval '3 days' WHERE member_id = :m",
        m=member,
    )
    yesterday = datetime.now(UTC) - timedelta(days=1)
    checked = await env.client.post(
        f"/v1/members/{member}/check-ins", json={"occurred_at": yesterday.isoformat()}
    )
    assert checked.status_code == 201, checked.text
    await assert_upgraded_once(env, member, "silver", 100, "action")
    assert (await tier_changes(env, member))[0]["occurred_at"] == yesterday.isoformat()
