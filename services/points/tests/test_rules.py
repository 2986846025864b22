"""Earning rules for actions: GET/PUT /v1/earning-rules and the pure cap logic."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_shared.testing import (
    Infra,
    asgi_client,
    migrated_database,
    running_app,
    settings_overrides,
)
from points.main import create_app
from points.rules.schemas import ACTION_TYPES, EarningRuleFields
from points.rules.service import allowed_points
from points.settings import PointsSettings
from points.testing import SERVICE_DIR, backdate_enrolment

# Earning rules are global: these tests change them on their own database.


@pytest.fixture(scope="module")
async def rules_db(infra: Infra) -> str:
    return await migrated_database(infra, "points_rules", SERVICE_DIR)


@pytest.fixture(scope="module")
async def client(rules_db: str, infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    # check-ins of past days (a month's cap): a real-time window of 100 days
    settings = PointsSettings(
        **settings_overrides(infra, rules_db), client_time_window_hours=24 * 100
    )
    app = create_app(settings)
    async with running_app(app), asgi_client(app) as c:
        yield c


async def test_every_action_has_a_rule(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/earning-rules")
    assert response.status_code == 200
    rules = response.json()["rules"]
    assert [r["action"] for r in rules] == list(ACTION_TYPES)
    for rule in rules:
        assert rule["points"] >= 0
        assert set(rule) >= {"daily_cap", "monthly_cap", "enabled", "counts_toward_growth"}
    one = await client.get("/v1/earning-rules/birthday")
    assert one.status_code == 200 and one.json()["action"] == "birthday"


async def test_put_replaces_listed_rules_only(client: httpx.AsyncClient) -> None:
    before = {r["action"]: r for r in (await client.get("/v1/earning-rules")).json()["rules"]}
    body = {
        "rules": [
            {"action": "review", "points": 15, "daily_cap": 45, "monthly_cap": 450,
             "enabled": True, "counts_toward_growth": True},
            {"action": "login", "points": 2, "daily_cap": 2, "monthly_cap": None,
             "enabled": True},
        ]
    }  # fmt: skip
    response = await client.put("/v1/earning-rules", json=body)
    assert response.status_code == 200, response.text
    after = {r["action"]: r for r in (await client.get("/v1/earning-rules")).json()["rules"]}
    assert after["review"]["points"] == 15 and after["review"]["counts_toward_growth"] is True
    assert after["login"]["enabled"] is True and after["login"]["monthly_cap"] is None
    assert after["login"]["counts_toward_growth"] is False  # omitted = default, not "keep"
    assert after["share"] == before["share"]


async def test_put_one_rule(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/v1/earning-rules/share", json={"points": 3, "daily_cap": 9, "monthly_cap": 90}
    )
    assert response.status_code == 200, response.text
    assert (await client.get("/v1/earning-rules/share")).json()["points"] == 3


def _rule(**kw: Any) -> dict[str, Any]:
    return {"action": "check_in", "points": 5, "daily_cap": 5, "monthly_cap": 100, **kw}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"rules": [_rule(action="dance")]}, "body.rules.0.action", id="unknown"),
        pytest.param({"rules": [_rule(points=-1)]}, "body.rules.0.points", id="negative"),
        pytest.param({"rules": [_rule(daily_cap=-1)]}, "body.rules.0.daily_cap", id="neg-cap"),
        pytest.param(
            {"rules": [_rule(daily_cap=200, monthly_cap=100)]}, "body.rules.0", id="day>month"
        ),
        pytest.param({"rules": [_rule(), _rule()]}, "body.rules", id="duplicate"),
        pytest.param({"rules": []}, "body.rules", id="empty"),
        pytest.param({"rules": [_rule(bonus=1)]}, "body.rules.0.bonus", id="unknown-field"),
    ],
)
async def test_invalid_rules_are_422_and_write_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    before = (await client.get("/v1/earning-rules")).json()
    response = await client.put("/v1/earning-rules", json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert (await client.get("/v1/earning-rules")).json() == before


async def test_unknown_action_path_is_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/earning-rules/dance")).status_code == 422
    response = await client.put("/v1/earning-rules/dance", json={"points": 1})
    assert response.status_code == 422


# ---------------------------------------------------------------------------- caps

RULE = EarningRuleFields(points=10, daily_cap=30, monthly_cap=100)


@pytest.mark.parametrize(
    ("today", "month", "expected"),
    [
        (0, 0, (10, "granted")),
        (20, 20, (10, "granted")),
        (25, 25, (5, "capped_daily")),
        (30, 30, (0, "capped_daily")),
        (0, 95, (5, "capped_monthly")),
        (0, 100, (0, "capped_monthly")),
        (28, 99, (1, "capped_monthly")),
        (29, 95, (1, "capped_daily")),
    ],
)
def test_allowed_points_under_caps(today: int, month: int, expected: tuple[int, str]) -> None:
    assert allowed_points(RULE, today, month) == expected


def test_disabled_zero_and_uncapped_rules() -> None:
    assert allowed_points(RULE.model_copy(update={"enabled": False}), 0, 0) == (0, "disabled")
    assert allowed_points(EarningRuleFields(points=0), 0, 0) == (0, "no_points")
    assert allowed_points(EarningRuleFields(points=200), 10**6, 10**7) == (200, "granted")


@settings(deadline=None)  # no timing asserts: a busy CI machine must not fail it
@given(
    points=st.integers(0, 500),
    daily=st.none() | st.integers(0, 1000),
    monthly=st.none() | st.integers(0, 5000),
    today=st.integers(0, 2000),
    month=st.integers(0, 6000),
)
def test_caps_are_never_exceeded(
    points: int, daily: int | None, monthly: int | None, today: int, month: int
) -> None:
    if daily is not None and monthly is not None and daily > monthly:
        daily, monthly = monthly, daily
    rule = EarningRuleFields(points=points, daily_cap=daily, monthly_cap=monthly)
    granted, reason = allowed_points(rule, today, month)
    assert 0 <= granted <= points
    if daily is not None:
        assert granted == 0 or today + granted <= daily
    if monthly is not None:
        assert granted == 0 or month + granted <= monthly
    assert (reason == "granted") == (granted == points and points > 0)


async def test_login_and_page_view_earn_only_once_configured(client: httpx.AsyncClient) -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    member = f"m-{uuid4().hex[:12]}"
    assert (await client.post("/v1/members", json={"member_id": member})).status_code == 201

    async def send(kind: str) -> tuple[int, int, str]:
        response = await client.post(
            "/v1/interactions",
            json={
                "event_id": f"ev-{uuid4().hex}",
                "member_id": member,
                "type": kind,
                "occurred_at": datetime.now(UTC).isoformat(),
                "attributes": {},
            },
        )
        body = response.json()
        return response.status_code, body.get("points"), body.get("reason")

    off = {"points": 2, "daily_cap": 2, "monthly_cap": 20, "enabled": False}
    for action in ("login", "page_view"):
        assert (await client.put(f"/v1/earning-rules/{action}", json=off)).status_code == 200
    assert await send("login") == (202, 0, "disabled")
    assert await send("page_view") == (202, 0, "disabled")

    on = {**off, "enabled": True}
    assert (await client.put("/v1/earning-rules/login", json=on)).status_code == 200
    assert await send("login") == (202, 2, "granted")
    assert await send("login") == (202, 0, "capped_daily")  # accepted, earns 0, says why
    assert await send("page_view") == (202, 0, "disabled")
    status = (await client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 2


async def test_a_capped_check_in_is_recorded_earns_zero_and_says_why(
    client: httpx.AsyncClient, rules_db: str
) -> None:
    from uuid import uuid4

    member = f"m-{uuid4().hex[:12]}"
    enrolled = await client.post("/v1/members", json={"member_id": member, "timezone": "UTC"})
    assert enrolled.status_code == 201
    await backdate_enrolment(rules_db, member, 70)
    rule = {"points": 5, "daily_cap": 5, "monthly_cap": 10, "enabled": True}
    assert (await client.put("/v1/earning-rules/check_in", json=rule)).status_code == 200
    answers = []
    last_month = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).replace(day=10, hour=8)
    for day in range(3):  # the 10th, 11th and 12th of last month
        response = await client.post(
            f"/v1/members/{member}/check-ins",
            json={"occurred_at": (last_month + timedelta(days=day)).isoformat()},
        )
        answers.append((response.status_code, response.json()["points"], response.json()["reason"]))
    # the day is taken either way; the capped one is accepted (202) and earns 0, saying why
    assert answers == [(201, 5, "granted"), (201, 5, "granted"), (202, 0, "capped_monthly")]
    status = (await client.get(f"/v1/members/{member}")).json()
    assert status["balance"]["available"] == 10
