"""The tier ladder: stored as data (GET/PUT /v1/tiers) and the pure tier rules."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from loyalty_shared.testing import (
    Infra,
    asgi_client,
    migrated_database,
    running_app,
    settings_overrides,
)
from points.main import create_app
from points.settings import PointsSettings
from points.testing import SERVICE_DIR, replica
from points.tiers import service as tiers
from points.tiers.badges import ALL_BADGES, MemberFacts, earned_badges
from points.tiers.jobs import evaluate_tiers
from points.tiers.schemas import Benefits, Tier, TierLadderIn

# ---------------------------------------------------------------------------- fixtures
# PUT /v1/tiers changes the ladder for every member, so these tests run on their own database.


@asynccontextmanager
async def fresh_points(infra: Infra) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    db = await migrated_database(infra, "points_tiers", SERVICE_DIR)
    app = create_app(PointsSettings(**settings_overrides(infra, db)))
    async with running_app(app), asgi_client(app) as client:
        yield client, db


@pytest.fixture(scope="module")
async def tiers_env(infra: Infra) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with fresh_points(infra) as env:
        yield env


@pytest.fixture
def client(tiers_env: tuple[httpx.AsyncClient, str]) -> httpx.AsyncClient:
    return tiers_env[0]


async def sql(db: str, statement: str, **params: Any) -> list[Any]:
    engine = create_async_engine(db)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def enrol(client: httpx.AsyncClient, db: str, *, tier: str, growth: int) -> str:
    member = f"m-{uuid.uuid4().hex[:12]}"
    assert (await client.post("/v1/members", json={"member_id": member})).status_code == 201
    await sql(db, "UPDATE members SET tier = :t WHERE member_id = :m", t=tier, m=member)
    await sql(db, "UPDATE balances SET growth_value = :g WHERE member_id = :m", g=growth, m=member)
    # growth value counts over the rolling window: one entry carrying it, moving no points
    await sql(
        db,
        "INSERT INTO ledger_entries (member_id, entry_type, points, source_type, source_id,"
        " idempotency_key, occurred_at, growth_delta)"
        " VALUES (:m, 'adjust', 0, 'test', 'growth', :k, now(), :g)",
        k=f"test-growth:{member}",
        g=growth,
        m=member,
    )
    return member


def ladder_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tiers": [
            {"code": "regular", "name": "Member", "threshold": 0},
            {"code": "silver", "name": "Silver", "threshold": 1000, "multiplier": "1.25"},
            {"code": "gold", "name": "Gold", "threshold": 5000, "multiplier": "1.5"},
            {
                "code": "diamond",
                "name": "Black Diamond",
                "threshold": 20000,
                "multiplier": "2",
                "benefits": {"discount_percent": "9.5", "home_service": True},
            },
        ],
        "rolling_window_days": 180,
        "growth_point_types": ["purchase"],
        "downgrade_grace_days": 14,
        "evaluation_policy": "calendar_year",
    }
    body.update(overrides)
    return body


# ---------------------------------------------------------------------------- HTTP


async def test_default_ladder_is_seeded(infra: Infra) -> None:
    async with fresh_points(infra) as (client, _):
        response = await client.get("/v1/tiers")
    assert response.status_code == 200
    ladder = response.json()
    assert [(t["code"], t["name"], t["multiplier"]) for t in ladder["tiers"]] == [
        ("regular", "Regular", "1"),
        ("silver", "Silver", "1.2"),
        ("gold", "Gold", "1.5"),
        ("diamond", "Diamond", "2"),
    ]
    thresholds = [t["threshold"] for t in ladder["tiers"]]
    assert thresholds[0] == 0 and thresholds == sorted(set(thresholds))
    assert ladder["rolling_window_days"] == 365
    assert ladder["evaluation_policy"] == "anniversary"
    assert ladder["version"] == 1
    benefits = {t["code"]: t["benefits"] for t in ladder["tiers"]}
    assert not benefits["silver"]["dedicated_advisor"]
    assert benefits["gold"]["dedicated_advisor"] and benefits["diamond"]["dedicated_advisor"]
    assert benefits["diamond"]["home_service"] and not benefits["gold"]["home_service"]


async def test_put_replaces_the_ladder_and_bumps_its_version(client: httpx.AsyncClient) -> None:
    before = (await client.get("/v1/tiers")).json()
    response = await client.put("/v1/tiers", json=ladder_body())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == before["version"] + 1
    got = (await client.get("/v1/tiers")).json()
    assert got["version"] == body["version"]
    assert [t["name"] for t in got["tiers"]] == ["Member", "Silver", "Gold", "Black Diamond"]
    assert got["tiers"][1]["multiplier"] == "1.25"
    assert got["tiers"][3]["benefits"]["discount_percent"] == "9.5"
    assert got["tiers"][3]["benefits"]["home_service"] is True
    assert got["tiers"][0]["benefits"]["free_shipping"] is False
    assert got["rolling_window_days"] == 180
    assert got["growth_point_types"] == ["purchase"]
    assert got["downgrade_grace_days"] == 14
    assert got["evaluation_policy"] == "calendar_year"


async def test_ladder_change_upgrades_at_once_and_never_downgrades(
    tiers_env: tuple[httpx.AsyncClient, str],
) -> None:
    client, db = tiers_env
    climber = await enrol(client, db, tier="regular", growth=3000)
    holder = await enrol(client, db, tier="gold", growth=100)
    body = ladder_body()
    body["tiers"][1]["threshold"] = 2500
    response = await client.put("/v1/tiers", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["members_upgraded"] >= 1
    assert (await client.get(f"/v1/members/{climber}")).json()["tier"] == "silver"
    assert (await client.get(f"/v1/members/{holder}")).json()["tier"] == "gold"

    body["tiers"][2]["threshold"] = 2800  # now the climber qualifies for gold as well
    assert (await client.put("/v1/tiers", json=body)).status_code == 200
    assert (await client.get(f"/v1/members/{climber}")).json()["tier"] == "gold"
    assert (await client.get(f"/v1/members/{holder}")).json()["tier"] == "gold"

    events = await sql(
        db,
        "SELECT payload->'data' FROM outbox WHERE key = :m AND event_type = :t ORDER BY id",
        m=climber,
        t="loyalty.tier.changed.v1",
    )
    assert [(e[0]["from_tier"], e[0]["to_tier"], e[0]["reason"]) for e in events] == [
        ("regular", "silver", "ladder_changed"),
        ("silver", "gold", "ladder_changed"),
    ]
    assert not await sql(
        db,
        "SELECT 1 FROM outbox WHERE key = :m AND event_type = :t",
        m=holder,
        t="loyalty.tier.changed.v1",
    )


async def test_removing_a_tier_members_hold_is_409_and_writes_nothing(
    tiers_env: tuple[httpx.AsyncClient, str],
) -> None:
    client, db = tiers_env
    await enrol(client, db, tier="diamond", growth=0)
    before = (await client.get("/v1/tiers")).json()
    body = ladder_body()
    body["tiers"] = body["tiers"][:3]
    response = await client.put("/v1/tiers", json=body)
    assert response.status_code == 409
    problem = response.json()
    assert problem["type"].endswith("/tier-in-use") and problem["codes"] == ["diamond"]
    assert (await client.get("/v1/tiers")).json() == before


async def test_renaming_and_adding_tiers_keeps_codes(client: httpx.AsyncClient) -> None:
    body = ladder_body()
    body["tiers"].append({"code": "black", "name": "Black", "threshold": 100000})
    body["tiers"][0]["name"] = "普通"
    response = await client.put("/v1/tiers", json=body)
    assert response.status_code == 200, response.text
    got = (await client.get("/v1/tiers")).json()
    assert [t["code"] for t in got["tiers"]][-1] == "black"
    assert got["tiers"][0]["name"] == "普通"


async def test_concurrent_puts_are_serialised(client: httpx.AsyncClient) -> None:
    before = (await client.get("/v1/tiers")).json()["version"]
    bodies = []
    for window in range(100, 106):
        bodies.append(ladder_body(rolling_window_days=window))
    answers = await asyncio.gather(*(client.put("/v1/tiers", json=b) for b in bodies))
    assert [a.status_code for a in answers] == [200] * len(bodies)
    versions = sorted(a.json()["version"] for a in answers)
    assert versions == list(range(before + 1, before + 1 + len(bodies)))
    last = max(answers, key=lambda a: a.json()["version"]).json()
    assert (await client.get("/v1/tiers")).json()["rolling_window_days"] == last[
        "rolling_window_days"
    ]


def _bad(mutate: Any) -> dict[str, Any]:
    body = ladder_body()
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            _bad(lambda b: b["tiers"][2].update(threshold=1000)),
            "body.tiers",
            id="equal-thresholds",
        ),
        pytest.param(
            _bad(lambda b: b["tiers"][2].update(threshold=10)), "body.tiers", id="decreasing"
        ),
        pytest.param(
            _bad(lambda b: b["tiers"][2].update(code="silver")), "body.tiers", id="duplicate-code"
        ),
        pytest.param(
            _bad(lambda b: b["tiers"][0].update(threshold=5)), "body.tiers", id="first-not-zero"
        ),
        pytest.param(_bad(lambda b: b.update(tiers=[])), "body.tiers", id="no-tier"),
        pytest.param(
            _bad(lambda b: b["tiers"][1].update(multiplier="0.5")),
            "body.tiers.1.multiplier",
            id="multiplier-below-one",
        ),
        pytest.param(
            _bad(lambda b: b["tiers"][1].update(code="Silver Card")),
            "body.tiers.1.code",
            id="bad-code",
        ),
        pytest.param(
            _bad(lambda b: b["tiers"][3]["benefits"].update(discount_percent="101")),
            "body.tiers.3.benefits.discount_percent",
            id="discount-over-100",
        ),
        pytest.param(
            _bad(lambda b: b.update(growth_point_types=["purchase", "gifts"])),
            "body.growth_point_types.1",
            id="unknown-point-type",
        ),
        pytest.param(
            _bad(lambda b: b.update(evaluation_policy="weekly")),
            "body.evaluation_policy",
            id="unknown-policy",
        ),
        pytest.param(
            _bad(lambda b: b.update(rolling_window_days=0)),
            "body.rolling_window_days",
            id="empty-window",
        ),
    ],
)
async def test_invalid_ladder_is_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    before = (await client.get("/v1/tiers")).json()
    response = await client.put("/v1/tiers", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]
    assert (await client.get("/v1/tiers")).json() == before


# ---------------------------------------------------------------------------- pure rules

LADDER = TierLadderIn(
    tiers=[
        Tier(code="regular", name="Regular", threshold=0),
        Tier(code="silver", name="Silver", threshold=2000, multiplier=Decimal("1.2")),
        Tier(
            code="gold",
            name="Gold",
            threshold=10000,
            multiplier=Decimal("1.5"),
            benefits=Benefits(discount_percent=Decimal("5"), dedicated_advisor=True),
        ),
        Tier(code="diamond", name="Diamond", threshold=50000, multiplier=Decimal("2")),
    ]
)


@pytest.mark.parametrize(
    ("growth", "code"),
    [(-5, "regular"), (0, "regular"), (1999, "regular"), (2000, "silver"), (9999, "silver"),
     (10000, "gold"), (50000, "diamond"), (10**9, "diamond")],
)  # fmt: skip
def test_tier_for_growth_uses_inclusive_thresholds(growth: int, code: str) -> None:
    assert tiers.tier_for_growth(LADDER, growth).code == code


def test_progress_says_exactly_what_is_missing() -> None:
    p = tiers.progress(LADDER, "silver", 7345)
    assert p.next_tier is not None and p.next_tier.code == "gold"
    assert p.growth_value_missing == 10000 - 7345
    assert tiers.progress(LADDER, "regular", 0).growth_value_missing == 2000
    top = tiers.progress(LADDER, "diamond", 10)
    assert top.next_tier is None and top.growth_value_missing == 0
    # a member held above what growth gives (grace) still sees the tier above the held one
    assert tiers.progress(LADDER, "gold", 0).growth_value_missing == 50000


def test_upgrade_at_once_may_skip_levels_but_never_goes_down() -> None:
    target = tiers.upgrade_for_growth(LADDER, "regular", 12000)
    assert target is not None and target.code == "gold"
    assert tiers.upgrade_for_growth(LADDER, "gold", 12000) is None
    assert tiers.upgrade_for_growth(LADDER, "gold", 0) is None


def test_downgrade_is_one_level_at_most() -> None:
    assert tiers.downgrade_target(LADDER, "diamond", "regular").code == "gold"
    assert tiers.downgrade_target(LADDER, "gold", "silver").code == "silver"
    assert tiers.downgrade_target(LADDER, "gold", "gold").code == "gold"
    assert tiers.downgrade_target(LADDER, "silver", "diamond").code == "silver"
    assert tiers.evaluate(LADDER, "diamond", 0).code == "gold"


@settings(deadline=None)  # no timing asserts: a busy CI machine must not fail it
@given(
    current=st.sampled_from(["regular", "silver", "gold", "diamond"]),
    growth=st.integers(min_value=-10, max_value=100_000),
)
def test_evaluation_moves_at_most_one_level_and_only_down(current: str, growth: int) -> None:
    after = tiers.rank(LADDER, tiers.evaluate(LADDER, current, growth).code)
    before = tiers.rank(LADDER, current)
    assert before - 1 <= after <= before
    qualified = tiers.rank(LADDER, tiers.tier_for_growth(LADDER, growth).code)
    assert after == before if qualified >= before else after == before - 1


def test_multiplier_and_unknown_codes() -> None:
    assert tiers.multiplier(LADDER, "gold") == Decimal("1.5")
    assert tiers.multiplier(LADDER, "regular") == Decimal("1")
    with pytest.raises(tiers.UnknownTier):
        tiers.multiplier(LADDER, "platinum")


def test_growth_counting_follows_ladder_and_rule() -> None:
    ladder = LADDER.model_copy(update={"growth_point_types": ["purchase", "action"]})
    assert tiers.counts_toward_growth(ladder, "purchase")
    assert not tiers.counts_toward_growth(ladder, "campaign_bonus")
    assert tiers.counts_toward_growth(ladder, "action", rule_counts=True)
    assert not tiers.counts_toward_growth(ladder, "action", rule_counts=False)
    only_purchase = LADDER.model_copy(update={"growth_point_types": ["purchase"]})
    assert not tiers.counts_toward_growth(only_purchase, "action", rule_counts=True)


def test_evaluation_dates_and_tier_held_until() -> None:
    enrolled = datetime(2024, 2, 29, 9, 30, tzinfo=UTC)
    ladder = LADDER.model_copy(update={"downgrade_grace_days": 30})
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert tiers.next_evaluation_at(ladder, enrolled, now) == datetime(
        2027, 2, 28, 9, 30, tzinfo=UTC
    )
    assert tiers.next_evaluation_at(ladder, enrolled, datetime(2024, 3, 1, tzinfo=UTC)) == (
        datetime(2025, 2, 28, 9, 30, tzinfo=UTC)
    )
    assert tiers.next_evaluation_at(ladder, enrolled, datetime(2027, 12, 1, tzinfo=UTC)) == (
        datetime(2028, 2, 29, 9, 30, tzinfo=UTC)
    )
    # the 2026 anniversary (28 Feb, 29 Feb in other years) was yesterday: its evaluation,
    # after 30 days' grace, can take the tier; after that the 2027 one
    assert tiers.tier_held_until(ladder, enrolled, now) == datetime(2026, 3, 30, 9, 30, tzinfo=UTC)
    later = datetime(2026, 3, 30, 9, 30, tzinfo=UTC)
    assert tiers.tier_held_until(ladder, enrolled, later) == datetime(
        2027, 3, 30, 9, 30, tzinfo=UTC
    )
    before = datetime(2026, 2, 27, tzinfo=UTC)
    assert tiers.tier_held_until(ladder, enrolled, before) == datetime(
        2026, 3, 30, 9, 30, tzinfo=UTC
    )
    yearly = ladder.model_copy(update={"evaluation_policy": "calendar_year"})
    assert tiers.next_evaluation_at(yearly, enrolled, now) == datetime(2027, 1, 1, tzinfo=UTC)


def test_benefit_list_and_entry_tier() -> None:
    assert tiers.entry_tier(LADDER).code == "regular"
    assert tiers.benefit_list(LADDER.tiers[0]) == []
    assert tiers.benefit_list(LADDER.tiers[2]) == [
        "discount_5_percent",
        "points_multiplier_1.5x",
        "dedicated_advisor",
    ]


def test_tier_status_for_the_member_view() -> None:
    enrolled = datetime(2025, 4, 10, tzinfo=UTC)
    status = tiers.tier_status(LADDER, "silver", 7345, enrolled, datetime(2026, 1, 5, tzinfo=UTC))
    assert status.tier.code == "silver"
    assert status.next_tier is not None and status.next_tier.name == "Gold"
    assert status.growth_value_missing == 2655
    assert status.tier_held_until == datetime(2026, 4, 10, tzinfo=UTC) + timedelta(days=30)
    assert status.benefits == ["points_multiplier_1.2x"]
    unknown = tiers.tier_status(LADDER, "vip", 12000, enrolled, enrolled)
    assert unknown.tier.code == "gold"


def test_badges_for_milestones() -> None:
    enrolled = datetime(2024, 2, 29, tzinfo=UTC)
    fresh = MemberFacts(enrolled_at=enrolled)
    assert earned_badges(fresh, enrolled) == []
    busy = MemberFacts(
        enrolled_at=enrolled, orders_count=10, reviews_count=1, lifetime_earned=10_000
    )
    codes = [b.code for b in earned_badges(busy, datetime(2025, 2, 27, tzinfo=UTC))]
    assert codes == ["first_order", "ten_orders", "first_review", "points_10k"]
    anniversary = [b.code for b in earned_badges(fresh, datetime(2025, 2, 28, tzinfo=UTC))]
    assert anniversary == ["one_year_member"]
    later = earned_badges(
        MemberFacts(enrolled_at=enrolled, check_in_days=30), datetime(2029, 3, 1, tzinfo=UTC)
    )
    assert [b.code for b in later] == ["check_in_30", "one_year_member", "five_year_member"]
    assert len({b.code for b in ALL_BADGES}) == len(ALL_BADGES)


async def test_changing_the_evaluation_policy_reschedules_every_member(
    tiers_env: tuple[httpx.AsyncClient, str], infra: Infra
) -> None:
    client, db = tiers_env
    member = await enrol(client, db, tier="gold", growth=6000)
    anniversary = ladder_body(evaluation_policy="anniversary")
    assert (await client.put("/v1/tiers", json=anniversary)).status_code == 200
    config = PointsSettings(**settings_overrides(infra, db))
    engine = create_async_engine(config.sqlalchemy_url())
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        now = datetime.now(UTC)
        await evaluate_tiers(sessionmaker, config, now, member_ids=[member])
        enrolled = (
            await sql(db, "SELECT enrolled_at FROM members WHERE member_id = :m", m=member)
        )[0][0]
        scheduled = await sql(
            db, "SELECT next_evaluation_at FROM members WHERE member_id = :m", m=member
        )
        assert scheduled[0][0] == enrolled.replace(year=enrolled.year + 1)

        calendar = ladder_body(evaluation_policy="calendar_year")
        assert (await client.put("/v1/tiers", json=calendar)).status_code == 200
        cleared = await sql(
            db, "SELECT next_evaluation_at FROM members WHERE member_id = :m", m=member
        )
        assert cleared[0][0] is None  # the date moved: the job computes it again
        result = await evaluate_tiers(sessionmaker, config, now, member_ids=[member])
        assert (result.scheduled, result.evaluated) == (1, 0)
        rescheduled = await sql(
            db, "SELECT next_evaluation_at FROM members WHERE member_id = :m", m=member
        )
        assert rescheduled[0][0] == datetime(now.year + 1, 1, 1, tzinfo=UTC)
        # a ladder change that keeps the policy keeps the dates
        assert (await client.put("/v1/tiers", json=ladder_body())).status_code == 200
        kept = await sql(
            db, "SELECT next_evaluation_at FROM members WHERE member_id = :m", m=member
        )
        assert kept == rescheduled
    finally:
        await engine.dispose()


async def test_which_point_types_count_toward_growth_is_the_ladders_choice(
    tiers_env: tuple[httpx.AsyncClient, str],
) -> None:
    client, db = tiers_env
    grown = {}
    for types in (["purchase", "tier_bonus"], ["purchase"]):
        body = ladder_body(growth_point_types=types)
        assert (await client.put("/v1/tiers", json=body)).status_code == 200
        member = await enrol(client, db, tier="silver", growth=1000)
        placed = await client.post(
            "/v1/orders",
            json={
                "order_id": f"o-{uuid.uuid4().hex[:12]}",
                "member_id": member,
                "amount": "100",
                "occurred_at": datetime.now(UTC).isoformat(),
            },
        )
        assert placed.status_code == 201, placed.text
        assert placed.json()["points_earned"] == 125  # 100 base + 25 from silver's 1.25x
        grown[tuple(types)] = (await client.get(f"/v1/members/{member}")).json()["growth_value"]
    assert grown == {("purchase", "tier_bonus"): 1125, ("purchase",): 1100}


async def test_simultaneous_orders_crossing_a_threshold_upgrade_once(
    tiers_env: tuple[httpx.AsyncClient, str], infra: Infra
) -> None:
    """A checkout that waited for the one that upgraded the member sees the new tier."""
    client, db = tiers_env
    assert (await client.put("/v1/tiers", json=ladder_body())).status_code == 200
    member = await enrol(client, db, tier="regular", growth=950)
    # an instance without the in-process queue: the checkouts meet only in Postgres
    settings = PointsSettings(**settings_overrides(infra, db))
    async with replica(settings, queue_members=False) as unqueued:
        answers = await asyncio.gather(
            *(
                unqueued.post(
                    "/v1/orders",
                    json={
                        "order_id": f"o-{uuid.uuid4().hex[:12]}",
                        "member_id": member,
                        "amount": "100.00",
                        "occurred_at": datetime.now(UTC).isoformat(),
                    },
                )
                for n in range(8)
            )
        )
    assert [a.status_code for a in answers] == [201] * 8
    # the order that crosses 1,000 earns at the regular rate and upgrades; the rest earn x1.25
    assert sorted(a.json()["points_earned"] for a in answers) == [100] + [125] * 7
    assert sum(a.json()["tier_changed"] for a in answers) == 1
    events = await sql(
        db,
        "SELECT payload->'data' FROM outbox WHERE key = :m AND event_type = :t",
        m=member,
        t="loyalty.tier.changed.v1",
    )
    assert [(e[0]["from_tier"], e[0]["to_tier"]) for e in events] == [("regular", "silver")]
