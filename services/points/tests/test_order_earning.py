"""The order flow with tiers and campaigns wired in: multiplier, campaign bonus, growth value
over the rolling window, upgrades at once, the member status (progress, benefits, badges)."""

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from points.testing import (
    backdate_enrolment,
    enrol,
    import_history,
    order,
    outbox_events,
    sql,
)

# Campaigns live in the earning database and change what every order there earns, so each
# test gives its campaigns a window of its own (a random second of the last day) or a
# category of its own, and orders outside them are untouched.


def own_instant() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(
        seconds=random.randint(3_600, 80_000)
    )


def campaign(kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "campaign_id": f"c-{uuid.uuid4().hex[:12]}",
        "name": f"{kind} test",
        "kind": kind,
        "starts_at": at.isoformat(),
        "ends_at": (at + timedelta(seconds=1)).isoformat(),
        **fields,
    }


async def test_order_crossing_a_threshold_upgrades_at_once_and_multiplies_after(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    member = await enrol(earning_client)
    big = await earning_client.post("/v1/orders", json=order(member, "2100.50"))
    assert big.status_code == 201, big.text
    out = big.json()
    assert out["points_earned"] == 2100  # still earned at the regular multiplier
    assert out["tier_changed"] is True and out["tier"] == "silver"

    small = await earning_client.post("/v1/orders", json=order(member, "100"))
    assert small.json()["points_earned"] == 120  # silver: 1.2x
    assert small.json()["tier_changed"] is False and small.json()["tier"] == "silver"

    events = await outbox_events(earning_db, member)
    changes = [p["data"] for t, p in events if t == "loyalty.tier.changed.v1"]
    assert len(changes) == 1
    assert changes[0]["from_tier"] == "regular" and changes[0]["to_tier"] == "silver"
    assert changes[0]["direction"] == "up" and changes[0]["reason"] == "order"
    assert changes[0]["growth_value"] == 2100
    earned = [p["data"] for t, p in events if t == "loyalty.points.earned.v1"]
    assert earned[-1]["breakdown"]["base_points"] == 100
    assert earned[-1]["breakdown"]["tier_bonus"] == 20
    assert earned[-1]["breakdown"]["tier_multiplier"] == "1.2"

    status = (await earning_client.get(f"/v1/members/{member}")).json()
    # growth value counts purchase points only (the ladder's default types): 2100 + 100
    assert status["growth_value"] == 2200
    assert status["next_tier"] == {"code": "gold", "name": "Gold", "growth_value_missing": 7800}
    assert "points_multiplier_1.2x" in status["benefits"]
    assert [b["code"] for b in status["badges"]] == ["first_order"]
    assert status["tier_held_until"] > status["enrolled_at"]


async def test_campaigns_add_their_bonus_and_are_listed_and_recorded(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    at = own_instant()
    category = f"cat-{uuid.uuid4().hex[:8]}"
    double = campaign("category_multiplier", at, categories=[category], multiplier="2")
    first = campaign("first_order_bonus", at, bonus_points=50, priority=5)
    blocked = campaign("fixed_bonus", at, bonus_points=999, stacking="exclusive", priority=-5)
    for body in (double, first, blocked):
        response = await earning_client.post("/v1/campaigns", json=body)
        assert response.status_code == 201, response.text

    member = await enrol(earning_client)
    await backdate_enrolment(earning_db, member, 1)  # the orders are up to a day old
    items = [
        {"sku": "a", "category": category, "unit_price": "60", "quantity": 1},
        {"sku": "b", "category": "other", "unit_price": "40", "quantity": 1},
    ]
    response = await earning_client.post("/v1/orders", json=order(member, "100", at, items=items))
    assert response.status_code == 201, response.text
    out = response.json()
    # base 100; the category's share (60) doubled: +60; first order: +50; exclusive blocked
    assert out["points_earned"] == 210
    assert sorted(out["campaigns_applied"]) == sorted([double["campaign_id"], first["campaign_id"]])

    again = await earning_client.post("/v1/orders", json=order(member, "100", at, items=items))
    assert again.json()["points_earned"] == 160  # no first-order bonus the second time

    details = await sql(
        earning_db,
        "SELECT details FROM ledger_entries WHERE member_id = :m AND source_type = 'order'"
        " ORDER BY id",
        m=member,
    )
    lines = {c["campaign_id"]: c["points"] for c in details[0].details["campaigns"]}
    assert lines == {double["campaign_id"]: 60, first["campaign_id"]: 50}
    assert details[0].details["campaign_bonus"] == 110

    outside = await earning_client.post(
        "/v1/orders", json=order(member, "100", at + timedelta(seconds=5), items=items)
    )
    assert outside.json()["points_earned"] == 100 and outside.json()["campaigns_applied"] == []


async def test_a_deactivated_campaign_stops_at_once_in_this_process(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    at = own_instant()
    body = campaign("fixed_bonus", at, bonus_points=7)
    assert (await earning_client.post("/v1/campaigns", json=body)).status_code == 201
    member = await enrol(earning_client)
    await backdate_enrolment(earning_db, member, 1)
    on = await earning_client.post("/v1/orders", json=order(member, "10", at))
    assert on.json()["points_earned"] == 17
    patched = await earning_client.patch(
        f"/v1/campaigns/{body['campaign_id']}", json={"active": False}
    )
    assert patched.status_code == 200, patched.text
    off = await earning_client.post("/v1/orders", json=order(member, "10", at))
    assert off.json()["points_earned"] == 10


async def test_growth_value_is_over_the_rolling_window_and_refunds_reduce_it(
    earning_client: httpx.AsyncClient, earning_db: str
) -> None:
    member = await enrol(earning_client)
    old = order(member, "3000", datetime.now(UTC) - timedelta(days=400))
    await import_history(earning_client, old)
    # evaluated as of its own time (history import): it did reach silver back then
    changes = [p["data"] for t, p in await outbox_events(earning_db, member) if "tier" in t]
    assert [(c["to_tier"], c["reason"]) for c in changes] == [("silver", "order")]
    recent = order(member, "500")
    assert (await earning_client.post("/v1/orders", json=recent)).status_code == 201
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["growth_value"] == 500  # the old order has left the 365-day window
    assert status["next_tier"]["growth_value_missing"] == 9500  # to gold

    refund = await earning_client.post(
        f"/v1/orders/{recent['order_id']}/refunds",
        json={"refund_id": f"r-{uuid.uuid4().hex[:10]}", "amount": "200"},
    )
    assert refund.status_code == 201, refund.text
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["growth_value"] == 300


async def test_a_diamond_member_sees_all_eight_benefit_kinds_and_no_next_tier(
    earning_client: httpx.AsyncClient,
) -> None:
    member = await enrol(earning_client)
    top = await earning_client.post("/v1/orders", json=order(member, "50000"))
    assert top.status_code == 201 and top.json()["tier"] == "diamond", top.text
    status = (await earning_client.get(f"/v1/members/{member}")).json()
    assert status["tier"] == "diamond" and status["next_tier"] is None
    assert status["benefits"] == [
        "discount_8_percent",
        "points_multiplier_2x",
        "free_shipping",
        "birthday_gift",
        "early_access",
        "priority_service",
        "dedicated_advisor",
        "home_service",
    ]
    regular = await enrol(earning_client)
    entry = (await earning_client.get(f"/v1/members/{regular}")).json()
    assert entry["benefits"] == []
    assert entry["next_tier"] == {"code": "silver", "name": "Silver", "growth_value_missing": 2000}
