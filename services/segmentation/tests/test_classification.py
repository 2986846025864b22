"""RFM, value tier, lifecycle on hand-made data with known answers (one database per test)."""

from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id, order, refund

AS_OF = "2026-01-01T00:00:00+00:00"


async def _profile(env: FreshSegmentation, member: str) -> dict:  # type: ignore[type-arg]
    response = await env.client.get(f"/v1/profiles/{member}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_rfm_scores_follow_cume_dist_and_ties_share_a_score(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    # five members; (last order day, order count, spend) chosen so cume_dist is known:
    # a and b tie on everything -> k = 2 for both -> ceil(5 * 2/5) = 2
    m = {name: member_id() for name in "abcde"}
    plan = {
        "a": ["2025-01-10"],
        "b": ["2025-01-10"],
        "c": ["2025-03-01", "2025-06-01"],
        "d": ["2025-02-01", "2025-05-01", "2025-09-01"],
        "e": ["2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01", "2025-12-01"],
    }
    amounts = {"a": "10.00", "b": "10.00", "c": "50.00", "d": "40.00", "e": "100.00"}
    for name, days in plan.items():
        await env.feed(enrolled(m[name]), *[order(m[name], d, amounts[name]) for d in days])
    await env.recompute(AS_OF)
    got = {name: (await _profile(env, m[name]))["rfm"] for name in "abcde"}
    # R over last order: a=b (Jan 10) < c (Jun 1) < d (Sep 1) < e (Dec 1)
    assert [got[n]["r"] for n in "abcde"] == [2, 2, 3, 4, 5]
    # F over order count 1,1,2,3,5
    assert [got[n]["f"] for n in "abcde"] == [2, 2, 3, 4, 5]
    # M over spend 10,10,100,120,500
    assert [got[n]["m"] for n in "abcde"] == [2, 2, 3, 4, 5]
    # named: R=5, FM=5 -> Champions; R=4, FM=4 -> Loyal; R=3, FM=3 -> Needs attention;
    # R=2, FM=2 -> Hibernating
    assert [got[n]["segment"] for n in "abcde"] == [
        "Hibernating",
        "Hibernating",
        "Needs attention",
        "Loyal",
        "Champions",
    ]
    body = await _profile(env, m["a"])
    assert body["scores_as_of"].startswith("2026-01-01T00:00:00")


async def test_value_tier_rules_with_ties_and_conflicts(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    # 10 members: spend in the 365 days before as_of and the number of orders.
    # p = cume_dist of spend: rank k / 10.
    spec = {
        # name: (orders in window, amount each)
        "top": (5, "200.00"),  # spend 1000, k=10 p=1.0, n=5 -> high
        "top_few": (4, "240.00"),  # spend 960, k=9 p=0.9 > 0.8 but n=4 -> medium
        "big_one": (1, "900.00"),  # spend 900, k=8 p=0.8 -> not > 0.8; n=1 -> low
        "mid_a": (3, "100.00"),  # spend 300, k=7 (tie with mid_b) p=0.7 -> medium
        "mid_b": (2, "150.00"),  # spend 300, tie -> same p=0.7 -> medium
        "m5": (2, "100.00"),  # 200, k=5 p=0.5 -> medium
        "low4": (2, "90.00"),  # 180, k=4 p=0.4 -> low (p <= 0.4)
        "low3": (3, "50.00"),  # 150, k=3 -> low
        "low2": (2, "50.00"),  # 100, k=2 -> low
        "old": (0, "0"),  # orders only before the window: spend_365 0, k=1 -> low
    }
    m = {name: member_id() for name in spec}
    for name, (n, amount) in spec.items():
        events = [enrolled(m[name])]
        events += [order(m[name], f"2025-0{i + 1}-15", amount) for i in range(n)]
        if name == "old":
            events.append(order(m[name], "2024-06-01", "5000.00"))
        await env.feed(*events)
    await env.recompute(AS_OF)
    tiers = {name: (await _profile(env, m[name]))["value_tier"] for name in spec}
    assert tiers == {
        "top": "high",
        "top_few": "medium",
        "big_one": "low",
        "mid_a": "medium",
        "mid_b": "medium",
        "m5": "medium",
        "low4": "low",
        "low3": "low",
        "low2": "low",
        "old": "low",
    }
    listed = (await env.client.get("/v1/profiles", params={"value_tier": "high"})).json()
    assert listed["total"] == 1 and listed["items"][0]["member_id"] == m["top"]


async def test_population_is_members_with_an_order_before_as_of_and_refunds_count_as_of(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    early, late = member_id(), member_id()
    first = order(early, "2025-05-01", "100.00")
    await env.feed(enrolled(early), first, order(late, "2026-02-01", "50.00"))
    await env.feed(refund(early, first.data["order_id"], "30.00", "2025-06-01"))
    await env.feed(refund(early, first.data["order_id"], "20.00", "2026-03-01"))  # after as_of
    await env.recompute(AS_OF)
    outside = await _profile(env, late)
    assert outside["rfm"] == {"r": None, "f": None, "m": None, "segment": None}
    assert outside["lifecycle"] is None and outside["scores_as_of"] is not None
    # every customer has a value tier (coverage 100%): no order before as_of -> low
    assert (outside["value_tier"], outside["value_group"]) == ("low", "ordinary")
    inside = await _profile(env, early)
    assert inside["value_tier"] == "low" and inside["rfm"]["r"] == 5
    assert inside["total_spend"] == "50.00"  # live total: both refunds
    job = await env.recompute(AS_OF)
    assert job["result"]["population"] == 1


async def test_every_profile_is_in_exactly_one_value_tier_after_a_recompute(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """DOMAIN: coverage 100%. Members without an order before as_of (enrolled only, or
    ordering only later) are low and do not move the others' percentiles."""
    env = fresh_segmentation
    buyers = {member_id(): n for n in (1, 2, 3, 5, 6)}
    for m, n in buyers.items():
        await env.feed(enrolled(m), *[order(m, f"2025-0{k}-10", "100.00") for k in range(1, n + 1)])
    enrolled_only, later = member_id(), member_id()
    await env.feed(enrolled(enrolled_only), enrolled(later), order(later, "2026-02-01", "900.00"))
    await env.recompute(AS_OF)
    tiers = {m: (await _profile(env, m))["value_tier"] for m in [*buyers, enrolled_only, later]}
    # p = k / 5 over the buyers only: 0.2 and 0.4 low, 0.6 and 0.8 medium (high needs
    # p > 0.8), 1.0 with 6 orders high
    assert list(tiers.values()) == ["low", "low", "medium", "medium", "high", "low", "low"]
    listed = {
        tier: (await env.client.get("/v1/profiles", params={"value_tier": tier})).json()["total"]
        for tier in ("high", "medium", "low")
    }
    everyone = (await env.client.get("/v1/profiles")).json()["total"]
    assert listed == {"high": 1, "medium": 2, "low": 4} and sum(listed.values()) == everyone
    # the daily recompute's events: the new ones get their first tier too
    firsts = await env.sql(
        "SELECT key, payload->'data'->>'to_value_tier' FROM outbox "
        "WHERE event_type = 'loyalty.profile.value_tier_changed.v1' AND key = ANY(:m)",
        m=[enrolled_only, later],
    )
    assert sorted(tuple(r) for r in firsts) == sorted([(enrolled_only, "low"), (later, "low")])


async def test_lifecycle_relative_to_own_rhythm_and_change_events(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    steady = member_id()  # orders every 10 days: median gap 10
    newbie = member_id()  # one order, default rhythm 30 days
    await env.feed(
        enrolled(steady),
        *[order(steady, f"2025-11-{d:02d}", "20.00") for d in (1, 11, 21)],
        order(steady, "2025-10-22", "20.00"),
        order(steady, "2025-10-12", "20.00"),
        enrolled(newbie),
        order(newbie, "2025-12-20", "20.00"),
    )
    # as of Dec 1: steady's last order Nov 21 -> 10 days = 1.0 x rhythm; 5 orders -> mature
    await env.recompute("2025-12-01T12:00:00+00:00")
    assert (await _profile(env, steady))["lifecycle"] == "mature"
    assert (await _profile(env, steady))["median_gap_days"] == 10
    # as of Dec 8: 17 days = 1.7 x -> sleeping; newbie has no order yet -> outside
    await env.recompute("2025-12-08T12:00:00+00:00")
    assert (await _profile(env, steady))["lifecycle"] == "sleeping"
    assert (await _profile(env, newbie))["lifecycle"] is None
    # as of Dec 31: steady 40 days = 4.0 x -> churn-risk (> 2.5, not > 4); newbie 11 days -> new
    await env.recompute("2025-12-31T12:00:00+00:00")
    assert (await _profile(env, steady))["lifecycle"] == "churn-risk"
    assert (await _profile(env, newbie))["lifecycle"] == "new"
    await env.recompute("2026-01-15T12:00:00+00:00")
    assert (await _profile(env, steady))["lifecycle"] == "churned"  # 55 days = 5.5 x
    changes = await env.sql(
        "SELECT payload->'data'->>'from_stage', payload->'data'->>'to_stage' FROM outbox "
        "WHERE event_type = 'loyalty.profile.lifecycle_changed.v1' AND key = :m ORDER BY id",
        m=steady,
    )
    assert [tuple(r) for r in changes] == [
        (None, "mature"),
        ("mature", "sleeping"),
        ("sleeping", "churn-risk"),
        ("churn-risk", "churned"),
    ]
