"""Campaigns: CRUD through /v1/campaigns, loading the running ones, and the pure calculator."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from loyalty_shared.testing import (
    Infra,
    asgi_client,
    migrated_database,
    running_app,
    settings_overrides,
)
from points.campaigns.calculator import (
    Campaign,
    OrderFacts,
    OrderLine,
    apply_campaigns,
    campaign_bonus,
)
from points.campaigns.service import active_campaigns
from points.main import create_app
from points.settings import PointsSettings
from points.testing import SERVICE_DIR, replica

# Running campaigns change what every order earns, so these tests use their own database.


@pytest.fixture(scope="module")
async def campaigns_app(infra: Infra) -> AsyncIterator[FastAPI]:
    db = await migrated_database(infra, "points_campaigns", SERVICE_DIR)
    app = create_app(PointsSettings(**settings_overrides(infra, db)))
    async with running_app(app):
        yield app


@pytest.fixture
async def client(campaigns_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(campaigns_app) as c:
        yield c


NOW = datetime.now(UTC).replace(microsecond=0)


def cid() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def campaign_body(kind: str = "fixed_bonus", **overrides: Any) -> dict[str, Any]:
    by_kind: dict[str, dict[str, Any]] = {
        "category_multiplier": {"categories": ["shoes"], "multiplier": "2"},
        "first_order_bonus": {"bonus_points": 100},
        "spend_threshold_bonus": {"threshold": "500.00", "bonus_points": 50},
        "fixed_bonus": {"bonus_points": 10},
    }
    body = {
        "campaign_id": cid(),
        "name": f"{kind} campaign",
        "kind": kind,
        "starts_at": (NOW - timedelta(days=1)).isoformat(),
        "ends_at": (NOW + timedelta(days=7)).isoformat(),
        **by_kind[kind],
    }
    body.update(overrides)
    return body


# ---------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize(
    "kind", ["category_multiplier", "first_order_bonus", "spend_threshold_bonus", "fixed_bonus"]
)
async def test_create_and_read_each_kind(client: httpx.AsyncClient, kind: str) -> None:
    body = campaign_body(kind, stacking="exclusive", priority=7, description="autumn")
    created = await client.post("/v1/campaigns", json=body)
    assert created.status_code == 201, created.text
    out = created.json()
    assert out["campaign_id"] == body["campaign_id"] and out["kind"] == kind
    assert out["stacking"] == "exclusive" and out["priority"] == 7 and out["active"] is True
    got = await client.get(f"/v1/campaigns/{body['campaign_id']}")
    assert got.status_code == 200 and got.json() == out


async def test_post_is_idempotent_by_campaign_id(client: httpx.AsyncClient) -> None:
    body = campaign_body("spend_threshold_bonus")
    first = await client.post("/v1/campaigns", json=body)
    again = await client.post("/v1/campaigns", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    changed = await client.post("/v1/campaigns", json={**body, "bonus_points": 51})
    assert changed.status_code == 409
    assert changed.json()["type"].endswith("/campaign-exists")
    assert (await client.get(f"/v1/campaigns/{body['campaign_id']}")).json()["bonus_points"] == 50


async def test_idempotency_key_replays_the_first_answer(client: httpx.AsyncClient) -> None:
    body = campaign_body("first_order_bonus")
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await client.post("/v1/campaigns", json=body, headers=key)
    replay = await client.post("/v1/campaigns", json=body, headers=key)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json() and replay.headers.get("Idempotent-Replayed") == "true"
    other = await client.post("/v1/campaigns", json=campaign_body(), headers=key)
    assert other.status_code == 409


async def test_concurrent_creates_of_one_campaign_create_it_once(
    client: httpx.AsyncClient,
) -> None:
    body = campaign_body("fixed_bonus")
    answers = await asyncio.gather(*(client.post("/v1/campaigns", json=body) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.text for a in answers}) == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param(
            {"ends_at": (NOW - timedelta(days=2)).isoformat()}, "body.ends_at", id="ends-first"
        ),
        pytest.param(
            {"ends_at": (NOW - timedelta(days=1)).isoformat()}, "body.ends_at", id="empty"
        ),
        pytest.param({"bonus_points": None}, "body.bonus_points", id="missing-bonus"),
        pytest.param({"bonus_points": -5}, "body.bonus_points", id="negative-bonus"),
        pytest.param({"multiplier": "3"}, "body.multiplier", id="field-of-other-kind"),
        pytest.param({"kind": "mystery"}, "body.kind", id="unknown-kind"),
        pytest.param({"stacking": "sometimes"}, "body.stacking", id="unknown-stacking"),
        pytest.param({"starts_at": "2026-01-01T00:00:00"}, "body.starts_at", id="naive-time"),
        pytest.param({"eligible_tiers": ["platinum"]}, "body.eligible_tiers", id="unknown-tier"),
        pytest.param({"campaign_id": "has space"}, "body.campaign_id", id="bad-id"),
    ],
)
async def test_invalid_campaign_is_422_and_writes_nothing(
    client: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    body = {**campaign_body("fixed_bonus"), **overrides}
    response = await client.post("/v1/campaigns", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]
    assert (await client.get(f"/v1/campaigns/{body['campaign_id']}")).status_code in (404, 422)


async def test_category_multiplier_needs_categories_and_multiplier(
    client: httpx.AsyncClient,
) -> None:
    body = campaign_body("category_multiplier", categories=[], multiplier=None)
    response = await client.post("/v1/campaigns", json=body)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"body.categories", "body.multiplier"}


async def test_patch_edits_and_deactivates(client: httpx.AsyncClient) -> None:
    body = campaign_body("fixed_bonus")
    await client.post("/v1/campaigns", json=body)
    url = f"/v1/campaigns/{body['campaign_id']}"
    patched = await client.patch(url, json={"bonus_points": 25, "priority": 3})
    assert patched.status_code == 200, patched.text
    assert patched.json()["bonus_points"] == 25 and patched.json()["priority"] == 3
    off = await client.patch(url, json={"active": False})
    assert off.status_code == 200 and off.json()["active"] is False
    assert (await client.get(url)).json()["active"] is False


async def test_bad_patch_is_422_and_changes_nothing(client: httpx.AsyncClient) -> None:
    body = campaign_body("fixed_bonus")
    before = (await client.post("/v1/campaigns", json=body)).json()
    url = f"/v1/campaigns/{body['campaign_id']}"
    for patch, field in [
        ({"ends_at": (NOW - timedelta(days=3)).isoformat()}, "body.ends_at"),
        ({"multiplier": "2"}, "body.multiplier"),
        ({"name": None}, "body.name"),
        ({"kind": "fixed_bonus"}, "body.kind"),
    ]:
        response = await client.patch(url, json=patch)
        assert response.status_code == 422, (patch, response.text)
        assert field in [e["field"] for e in response.json()["errors"]]
    assert (await client.get(url)).json() == before


async def test_put_replaces_the_definition(client: httpx.AsyncClient) -> None:
    body = campaign_body("fixed_bonus")
    await client.post("/v1/campaigns", json=body)
    url = f"/v1/campaigns/{body['campaign_id']}"
    new = {k: v for k, v in campaign_body("category_multiplier").items() if k != "campaign_id"}
    response = await client.put(url, json=new)
    assert response.status_code == 200, response.text
    got = (await client.get(url)).json()
    assert got["kind"] == "category_multiplier" and got["bonus_points"] is None
    assert got["categories"] == ["shoes"] and got["multiplier"] == "2.000"


async def test_unknown_campaign_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/v1/campaigns/{cid()}")).status_code == 404
    assert (await client.patch(f"/v1/campaigns/{cid()}", json={"active": False})).status_code == 404


async def test_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    future = campaign_body(
        "fixed_bonus",
        starts_at=(NOW + timedelta(days=30)).isoformat(),
        ends_at=(NOW + timedelta(days=40)).isoformat(),
    )
    running = campaign_body("fixed_bonus")
    for body in (future, running):
        assert (await client.post("/v1/campaigns", json=body)).status_code == 201
    listed = (
        await client.get("/v1/campaigns", params={"running_at": NOW.isoformat(), "limit": 200})
    ).json()
    ids = {c["campaign_id"] for c in listed["items"]}
    assert running["campaign_id"] in ids and future["campaign_id"] not in ids

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await client.get("/v1/campaigns", params=params)).json()
        seen += [c["campaign_id"] for c in page["items"]]
        if page["next_cursor"] is None:
            break
        params["after"] = page["next_cursor"]
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert {future["campaign_id"], running["campaign_id"]} <= set(seen)
    bad = await client.get("/v1/campaigns", params={"running_at": "yesterday"})
    assert bad.status_code == 422


async def test_active_campaigns_loads_what_runs_at_an_instant(
    client: httpx.AsyncClient, campaigns_app: FastAPI
) -> None:
    at = NOW + timedelta(days=3650)  # a window no other test uses
    inside = campaign_body(
        "fixed_bonus",
        starts_at=at.isoformat(),
        ends_at=(at + timedelta(hours=1)).isoformat(),
    )
    ended = campaign_body(
        "fixed_bonus",
        starts_at=(at - timedelta(hours=1)).isoformat(),
        ends_at=at.isoformat(),
    )
    paused = campaign_body(
        "fixed_bonus",
        starts_at=at.isoformat(),
        ends_at=(at + timedelta(hours=1)).isoformat(),
        active=False,
    )
    bulk = [
        campaign_body(
            "category_multiplier",
            starts_at=(at - timedelta(days=1)).isoformat(),
            ends_at=(at + timedelta(days=1)).isoformat(),
            categories=[f"cat-{i}"],
        )
        for i in range(10)
    ]
    for body in (inside, ended, paused, *bulk):
        assert (await client.post("/v1/campaigns", json=body)).status_code == 201
    async with campaigns_app.state.sessionmaker() as session:
        running = await active_campaigns(session, at)
    ids = {c.campaign_id for c in running}
    assert inside["campaign_id"] in ids
    assert ended["campaign_id"] not in ids and paused["campaign_id"] not in ids
    assert {b["campaign_id"] for b in bulk} <= ids
    loaded = next(c for c in running if c.campaign_id == bulk[3]["campaign_id"])
    assert loaded.categories == frozenset({"cat-3"}) and loaded.multiplier == Decimal(2)
    assert loaded.stackable and loaded.kind == "category_multiplier"


async def test_preview_shows_what_running_campaigns_add(client: httpx.AsyncClient) -> None:
    at = NOW + timedelta(days=7300)  # a window no other test uses
    window = {"starts_at": at.isoformat(), "ends_at": (at + timedelta(hours=1)).isoformat()}
    double = campaign_body("category_multiplier", **window, priority=5)
    spend = campaign_body("spend_threshold_bonus", **window, priority=1)
    exclusive = campaign_body("fixed_bonus", **window, stacking="exclusive", bonus_points=999)
    for body in (double, spend, exclusive):
        assert (await client.post("/v1/campaigns", json=body)).status_code == 201
    order_ = {
        "amount": "600.50",
        "occurred_at": (at + timedelta(minutes=5)).isoformat(),
        "member_tier": "gold",
        "items": [
            {"category": "shoes", "unit_price": "200.00", "quantity": 2},
            {"category": "books", "unit_price": "200.50", "quantity": 1},
        ],
    }
    response = await client.post("/v1/campaigns/preview", json=order_)
    assert response.status_code == 200, response.text
    out = response.json()
    # base 600; shoes are 400 of 600.50 -> 399 base points; x1.5 tier x (2 - 1) -> 598
    assert out["base_points"] == 600 and out["tier_multiplier"] == "1.5"
    assert out["applied"] == [double["campaign_id"], spend["campaign_id"]]
    assert out["excluded"] == [exclusive["campaign_id"]]
    assert [line["points"] for line in out["lines"]] == [598, 50]
    assert out["bonus_points"] == 648
    # nothing was recorded: the same preview gives the same answer
    assert (await client.post("/v1/campaigns/preview", json=order_)).json() == out
    bad = await client.post("/v1/campaigns/preview", json={**order_, "member_tier": "vip"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.member_tier"
    negative = await client.post("/v1/campaigns/preview", json={**order_, "amount": "-1"})
    assert negative.status_code == 422


# ---------------------------------------------------------------------------- calculator

T0 = datetime(2026, 6, 1, tzinfo=UTC)
T1 = datetime(2026, 7, 1, tzinfo=UTC)
AT = datetime(2026, 6, 15, 12, tzinfo=UTC)


def order(**kw: Any) -> OrderFacts:
    defaults: dict[str, Any] = {
        "amount": Decimal("300.00"),
        "occurred_at": AT,
        "is_first_order": False,
        "member_tier": "regular",
        "lines": (OrderLine("shoes", Decimal("200.00")), OrderLine("books", Decimal("100.00"))),
    }
    return OrderFacts(**{**defaults, **kw})


def camp(campaign_id: str, kind: str = "fixed_bonus", **kw: Any) -> Campaign:
    return Campaign(campaign_id=campaign_id, kind=kind, starts_at=T0, ends_at=T1, **kw)  # type: ignore[arg-type]


def test_category_multiplier_doubles_the_category_share_with_tier_multiplier() -> None:
    double_shoes = camp("x2", "category_multiplier", categories=frozenset({"shoes"}),
                        multiplier=Decimal(2))  # fmt: skip
    # 300 base points, 2/3 from shoes -> 200; doubled at tier 1.5 -> +300
    result = apply_campaigns(order(), [double_shoes], 300, Decimal("1.5"))
    assert result.bonus_points == 300 and result.applied == ["x2"]
    assert result.lines[0].points == 300 and result.lines[0].kind == "category_multiplier"
    # rounding down: 7 base points, 2/3 shoes -> 4 (floor of 4.67) -> +4
    assert apply_campaigns(order(), [double_shoes], 7, Decimal(1)).bonus_points == 4
    # no matching category, or no items: nothing
    assert apply_campaigns(order(lines=()), [double_shoes], 300, Decimal(1)).bonus_points == 0
    books_only = order(lines=(OrderLine("books", Decimal("10")),))
    assert apply_campaigns(books_only, [double_shoes], 300, Decimal(1)).applied == []


def test_fixed_bonuses_and_their_conditions() -> None:
    first = camp("first", "first_order_bonus", bonus_points=100)
    spend = camp("spend", "spend_threshold_bonus", bonus_points=50, threshold=Decimal("300.00"))
    fixed = camp("fixed", "fixed_bonus", bonus_points=10)
    result = apply_campaigns(order(is_first_order=True), [first, spend, fixed], 300, Decimal(2))
    assert result.bonus_points == 160  # fixed bonuses are not multiplied by the tier
    assert set(result.applied) == {"first", "spend", "fixed"}
    result = apply_campaigns(
        order(amount=Decimal("299.99")), [first, spend, fixed], 299, Decimal(1)
    )
    assert result.applied == ["fixed"] and result.bonus_points == 10


def test_time_window_is_half_open_and_inactive_never_applies() -> None:
    fixed = camp("fixed", bonus_points=10)
    assert campaign_bonus(fixed, order(occurred_at=T0), 1, Decimal(1)) == 10
    assert campaign_bonus(fixed, order(occurred_at=T1), 1, Decimal(1)) == 0
    assert campaign_bonus(fixed, order(occurred_at=T0 - timedelta(seconds=1)), 1, Decimal(1)) == 0
    assert campaign_bonus(replace(fixed, active=False), order(), 1, Decimal(1)) == 0


def test_eligible_tiers_restrict_a_campaign() -> None:
    vip = camp("vip", bonus_points=10, eligible_tiers=frozenset({"gold", "diamond"}))
    assert apply_campaigns(order(member_tier="silver"), [vip], 1, Decimal(1)).bonus_points == 0
    assert apply_campaigns(order(member_tier="gold"), [vip], 1, Decimal(1)).bonus_points == 10


def test_exclusive_on_top_applies_alone() -> None:
    big = camp("big", bonus_points=500, stackable=False, priority=10)
    small = camp("small", bonus_points=10, priority=5)
    other = camp("other", bonus_points=20, priority=1)
    result = apply_campaigns(order(), [small, big, other], 300, Decimal(1))
    assert result.applied == ["big"] and result.bonus_points == 500
    assert result.excluded == ["other", "small"]


def test_exclusive_outranked_by_a_stackable_is_excluded() -> None:
    exclusive = camp("excl", bonus_points=500, stackable=False, priority=1)
    stack_a = camp("a", bonus_points=10, priority=5)
    stack_b = camp("b", bonus_points=20, priority=0)
    result = apply_campaigns(order(), [exclusive, stack_a, stack_b], 300, Decimal(1))
    assert result.applied == ["a", "b"] and result.bonus_points == 30
    assert result.excluded == ["excl"]


def test_ties_exclusive_first_then_bigger_bonus_then_id() -> None:
    excl_small = camp("e-small", bonus_points=5, stackable=False, priority=3)
    excl_big = camp("e-big", bonus_points=50, stackable=False, priority=3)
    stack = camp("s", bonus_points=100, priority=3)
    result = apply_campaigns(order(), [stack, excl_small, excl_big], 300, Decimal(1))
    assert result.applied == ["e-big"]
    twin_a = camp("twin-a", bonus_points=50, stackable=False, priority=3)
    assert apply_campaigns(order(), [excl_big, twin_a], 1, Decimal(1)).applied == ["e-big"]


def test_ineligible_exclusive_does_not_block_others() -> None:
    exclusive_shoes = camp("excl", "category_multiplier", stackable=False, priority=99,
                           categories=frozenset({"hats"}), multiplier=Decimal(3))  # fmt: skip
    fixed = camp("fixed", bonus_points=10)
    result = apply_campaigns(order(), [exclusive_shoes, fixed], 300, Decimal(1))
    assert result.applied == ["fixed"] and result.excluded == []


def test_stacked_multipliers_on_one_category_add_not_compound() -> None:
    x2 = camp("x2", "category_multiplier", categories=frozenset({"shoes"}), multiplier=Decimal(2))
    x3 = camp("x3", "category_multiplier", categories=frozenset({"shoes"}), multiplier=Decimal(3))
    # shoes base 200: +200 and +400
    assert apply_campaigns(order(), [x2, x3], 300, Decimal(1)).bonus_points == 600


def test_ten_campaigns_at_once() -> None:
    campaigns = [camp(f"c{i}", bonus_points=i + 1, priority=i % 3) for i in range(12)]
    result = apply_campaigns(order(), campaigns, 300, Decimal(1))
    assert len(result.applied) == 12 and result.bonus_points == sum(range(1, 13))


# properties ---------------------------------------------------------------------------

KINDS = ["category_multiplier", "first_order_bonus", "spend_threshold_bonus", "fixed_bonus"]
CATEGORIES = ["shoes", "books", "food", None]


@st.composite
def campaigns_strategy(draw: st.DrawFn) -> list[Campaign]:
    count = draw(st.integers(min_value=0, max_value=14))
    result = []
    for index in range(count):
        kind = draw(st.sampled_from(KINDS))
        start = T0 + timedelta(days=draw(st.integers(-5, 20)))
        result.append(
            Campaign(
                campaign_id=f"c{index:02d}",
                kind=kind,  # type: ignore[arg-type]
                starts_at=start,
                ends_at=start + timedelta(days=draw(st.integers(1, 40))),
                stackable=draw(st.booleans()),
                priority=draw(st.integers(-3, 3)),
                active=draw(st.booleans()),
                eligible_tiers=frozenset(draw(st.sets(st.sampled_from(["regular", "gold"])))),
                categories=frozenset(draw(st.sets(st.sampled_from(["shoes", "books", "food"])))),
                multiplier=Decimal(draw(st.integers(101, 500))) / 100,
                bonus_points=draw(st.integers(1, 1000)),
                threshold=Decimal(draw(st.integers(1, 100000))) / 100,
            )
        )
    return result


orders_strategy = st.builds(
    OrderFacts,
    amount=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2),
    occurred_at=st.just(AT),
    is_first_order=st.booleans(),
    member_tier=st.sampled_from(["regular", "gold"]),
    lines=st.lists(
        st.builds(
            OrderLine,
            category=st.sampled_from(CATEGORIES),
            amount=st.decimals(min_value=Decimal(0), max_value=Decimal("5000"), places=2),
        ),
        max_size=5,
    ).map(tuple),
)
tier_multipliers = st.sampled_from([Decimal(1), Decimal("1.2"), Decimal("1.5"), Decimal(2)])


@settings(deadline=None)  # no timing asserts: a busy CI machine must not fail it
@given(
    order_=orders_strategy,
    campaigns=campaigns_strategy(),
    base=st.integers(0, 100_000),
    tier_multiplier=tier_multipliers,
    data=st.data(),
)
def test_calculator_properties(
    order_: OrderFacts,
    campaigns: list[Campaign],
    base: int,
    tier_multiplier: Decimal,
    data: st.DataObject,
) -> None:
    result = apply_campaigns(order_, campaigns, base, tier_multiplier)
    # never negative, and the lines add up
    assert result.bonus_points >= 0
    assert all(line.points > 0 for line in result.lines)
    assert result.bonus_points == sum(line.points for line in result.lines)
    assert result.applied == [line.campaign_id for line in result.lines]
    # the order of the campaigns is irrelevant
    shuffled = data.draw(st.permutations(campaigns))
    assert apply_campaigns(order_, shuffled, base, tier_multiplier) == result
    # exclusivity: an applied exclusive campaign applies alone and outranks every eligible one
    by_id = {c.campaign_id: c for c in campaigns}
    applied = [by_id[i] for i in result.applied]
    eligible = [c for c in campaigns if campaign_bonus(c, order_, base, tier_multiplier) > 0]
    if any(not c.stackable for c in applied):
        assert len(applied) == 1
        assert all(applied[0].priority >= c.priority for c in eligible)
    else:
        assert {c.campaign_id for c in applied} == {c.campaign_id for c in eligible if c.stackable}
    # only eligible campaigns apply, and nothing eligible is silently dropped
    assert set(result.applied) | set(result.excluded) == {c.campaign_id for c in eligible}


async def test_simultaneous_first_orders_of_a_member_get_one_first_order_bonus(
    client: httpx.AsyncClient, campaigns_app: FastAPI
) -> None:
    """Each checkout reads "is this the first order" after it holds the member's lock."""
    # exclusive at the top priority: whatever else runs in this module, it decides alone
    campaign = campaign_body(
        "first_order_bonus", bonus_points=77, priority=1000, stacking="exclusive"
    )
    assert (await client.post("/v1/campaigns", json=campaign)).status_code == 201
    member = f"m-{uuid.uuid4().hex[:12]}"
    assert (await client.post("/v1/members", json={"member_id": member})).status_code == 201
    bonuses = 0
    # an instance without the in-process queue: the checkouts meet only in Postgres
    async with replica(campaigns_app.state.settings, queue_members=False) as unqueued:
        for wave in range(3):  # later waves read the window cache written under contention
            answers = await asyncio.gather(
                *(
                    unqueued.post(
                        "/v1/orders",
                        json={
                            "order_id": f"o-{uuid.uuid4().hex[:12]}",
                            "member_id": member,
                            "amount": "10.00",
                            # a second apart, in no particular order
                            "occurred_at": (NOW - timedelta(seconds=(n * 5) % 8)).isoformat(),
                        },
                    )
                    for n in range(8)
                )
            )
            assert [a.status_code for a in answers] == [201] * 8
            bonuses += sum(
                campaign["campaign_id"] in a.json()["campaigns_applied"] for a in answers
            )
            # the growth value counts every order once (read through the window cache)
            status = (await client.get(f"/v1/members/{member}")).json()
            async with campaigns_app.state.engine.connect() as conn:
                full = (
                    await conn.execute(
                        text(
                            "SELECT coalesce(sum(growth_delta), 0) FROM ledger_entries"
                            " WHERE member_id = :m"
                        ),
                        {"m": member},
                    )
                ).scalar_one()
            assert full > 0
            assert status["growth_value"] == full, wave
    assert bonuses == 1
