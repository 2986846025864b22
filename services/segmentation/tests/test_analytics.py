"""Groups, loyalty index and type, strategy matrix, jobs, KPIs."""

from sqlalchemy import text

from segmentation.testing import FreshSegmentation
from segmentation.testing_events import (
    complaint,
    enrolled,
    interaction,
    member_id,
    order,
    survey,
    tier_changed,
)

AS_OF = "2026-01-01T00:00:00+00:00"


async def _profile(env: FreshSegmentation, member: str) -> dict:  # type: ignore[type-arg]
    return (await env.client.get(f"/v1/profiles/{member}")).json()  # type: ignore[no-any-return]


async def test_loyalty_types_with_reasons_and_groups(fresh_segmentation: FreshSegmentation) -> None:
    env = fresh_segmentation
    bargain, fan, captive, staff, habit, once = (member_id() for _ in range(6))
    days = ("2025-10-01", "2025-11-01", "2025-12-01")
    await env.feed(
        enrolled(bargain),
        *[order(bargain, d, "30.00", coupon=True) for d in days],
        enrolled(fan),
        *[order(fan, d, "80.00") for d in days],
        survey(fan, nps=10, csat=5),
        enrolled(captive),
        order(captive, "2025-10-01", "50.00"),
        complaint(captive, "2025-10-02"),
        *[order(captive, d, "50.00") for d in days[1:]],
        survey(captive, nps=3),
        enrolled(staff),
        order(staff, "2025-12-01", "10.00"),
        enrolled(habit),
        order(habit, "2025-11-15", "20.00"),
        order(habit, "2025-12-15", "20.00"),
        enrolled(once),
        order(once, "2025-12-20", "15.00"),
        *[interaction(once, "page_view", "2025-12-2" + str(i)) for i in range(5)],
    )
    await env.client.post("/v1/tags", json={"name": "staff", "kind": "manual"})
    await env.client.post(f"/v1/profiles/{staff}/tags", json={"add": ["staff"]})
    await env.recompute(AS_OF)
    types = {
        k: (await _profile(env, v))["loyalty"]
        for k, v in {
            "bargain": bargain,
            "fan": fan,
            "captive": captive,
            "staff": staff,
            "habit": habit,
            "once": once,
        }.items()
    }
    assert {k: v["type"] for k, v in types.items()} == {
        "bargain": "benefit",
        "fan": "trust",
        "captive": "monopoly",
        "staff": "kinship",
        "habit": "inertia",
        "once": "latent",
    }
    assert "3 of 3 orders (100%) used a coupon or discount" in types["bargain"]["reasons"][0]
    assert types["fan"]["reasons"][0] == "3 orders (at least 3)"
    assert "2 orders after the first complaint" in types["captive"]["reasons"][1]
    assert "staff" in types["staff"]["reasons"][0]
    for loyalty in types.values():
        assert 0 <= loyalty["index"] <= 100
        assert set(loyalty["indicators"]) == {
            "repeat_purchases",
            "purchase_share",
            "brand_attention",
            "choice_time",
            "price_insensitivity",
            "competitor_resistance",
            "quality_tolerance",
        }
    assert types["fan"]["index"] > types["once"]["index"]
    bargain_profile = await _profile(env, bargain)
    assert bargain_profile["behaviour_group"] == "price-sensitive"
    assert "targeted discounts" in bargain_profile["strategies"]
    assert (await _profile(env, once))["behaviour_group"] == "quality-seeking"  # no signal at all


async def test_strategy_matrix_is_data_and_applies_to_profiles(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m = member_id()
    await env.feed(enrolled(m), order(m, "2025-12-20", "10.00"))
    await env.recompute(AS_OF)
    matrix = (await env.client.get("/v1/strategy-matrix")).json()["rules"]
    assert len(matrix) == 14 and {r["family"].split(":")[0] for r in matrix} == {
        "value",
        "behaviour",
        "lifecycle",
    }
    profile = await _profile(env, m)
    assert profile["lifecycle"] == "new" and "welcome journey" in profile["strategies"]
    put = await env.client.put(
        "/v1/strategy-matrix",
        json={
            "rules": [
                {"family": "lifecycle:activation", "lifecycle": "new", "strategies": ["call them"]},
                {"family": "everyone", "strategies": ["say thanks"]},
            ]
        },
    )
    assert put.status_code == 200 and len(put.json()["rules"]) == 2
    assert (await _profile(env, m))["strategies"] == ["call them", "say thanks"]
    bad = await env.client.put(
        "/v1/strategy-matrix",
        json={"rules": [{"family": "x", "lifecycle": "zombie", "strategies": ["a"]}]},
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"].startswith(
        "body.rules.0.lifecycle"
    )
    assert len((await env.client.get("/v1/strategy-matrix")).json()["rules"]) == 2


async def test_loyalty_weights_use_ahp_and_reject_inconsistent_matrices(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    current = (await env.client.get("/v1/analytics/loyalty-weights")).json()
    assert abs(sum(current["weights"].values()) - 1) < 1e-9 and current["cr"] < 0.1
    equal = [[1.0] * 7 for _ in range(7)]
    put = await env.client.put("/v1/analytics/loyalty-weights", json={"matrix": equal})
    assert put.status_code == 200 and all(
        abs(w - 1 / 7) < 1e-9 for w in put.json()["weights"].values()
    )
    inconsistent = [[1.0] * 7 for _ in range(7)]
    inconsistent[0][1], inconsistent[1][0] = 9.0, 1 / 9
    inconsistent[1][2], inconsistent[2][1] = 9.0, 1 / 9
    inconsistent[0][2], inconsistent[2][0] = 1 / 9, 9.0
    bad = await env.client.put("/v1/analytics/loyalty-weights", json={"matrix": inconsistent})
    assert bad.status_code == 422 and bad.json()["cr"] >= 0.1
    assert (await env.client.get("/v1/analytics/loyalty-weights")).json()["matrix"] == equal


async def test_recompute_job_reports_progress_and_bad_input(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    job = await env.recompute(AS_OF)
    assert job["progress"] == 1.0 and job["error"] is None and job["as_of"].startswith("2026-01-01")
    naive = await env.client.post("/v1/analytics/recompute", json={"as_of": "2026-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "body.as_of"
    assert (await env.client.get("/v1/jobs/nope")).status_code == 404


async def test_kpis_with_previous_period(fresh_segmentation: FreshSegmentation) -> None:
    env = fresh_segmentation
    a, b, c = member_id(), member_id(), member_id()
    await env.feed(
        enrolled(a, "2024-01-01", tier="bronze"),
        enrolled(b, "2024-01-01", tier="bronze"),
        enrolled(c, "2024-01-01", tier="bronze"),
        # previous period (Nov): a, b, c buy; current period (Dec): a twice, b once, c churns
        order(a, "2025-11-05", "100.00"),
        order(b, "2025-11-06", "50.00"),
        order(c, "2025-11-07", "10.00"),
        order(a, "2025-12-05", "100.00"),
        order(a, "2025-12-20", "100.00"),
        order(b, "2025-12-06", "40.00"),
        interaction(c, "review", "2025-12-10"),
        tier_changed(a, "gold", "2025-12-21"),
    )
    body = (
        await env.client.get(
            "/v1/analytics/kpis",
            params={"from": "2025-12-01T00:00:00+00:00", "to": "2025-12-31T00:00:00+00:00"},
        )
    ).json()
    k = body["kpis"]
    assert (k["revenue"]["current"], k["revenue"]["previous"]) == ("240.00", "160.00")
    assert (k["buyers"]["current"], k["buyers"]["previous"]) == (2, 3)
    assert k["repurchase_rate"]["current"] == 0.5 and k["repurchase_rate"]["previous"] == 0.0
    assert k["churn_rate"]["current"] == round(1 / 3, 4)  # c bought in Nov, not in Dec
    assert k["active_rate"]["current"] == 1.0  # c reviewed
    assert k["participation_rate"]["current"] == round(1 / 3, 4)
    assert k["tier_distribution"]["current"] == {"bronze": 2, "gold": 1}
    assert k["tier_distribution"]["previous"] == {"bronze": 3}
    assert body["previous_period"]["from"].startswith("2025-11-01")
    bad = await env.client.get(
        "/v1/analytics/kpis",
        params={"from": "2025-12-31T00:00:00+00:00", "to": "2025-12-01T00:00:00+00:00"},
    )
    assert bad.status_code == 422
    for params, field in (
        ({"from": "0001-01-01T00:00:00+00:00"}, "query.from"),  # previous period before year 1
        ({"from": "2025-12-01T00:00:00"}, "query.from"),  # no offset
    ):
        bad = await env.client.get("/v1/analytics/kpis", params=params)
        assert bad.status_code == 422, bad.text
        assert field in [e["field"] for e in bad.json()["errors"]]


async def test_daily_recompute_runs_once_per_day(fresh_segmentation: FreshSegmentation) -> None:
    from datetime import UTC, datetime

    from segmentation.analytics.jobs import DailyRecompute, next_daily_run

    env = fresh_segmentation
    m = member_id()
    await env.feed(enrolled(m), order(m, "2025-12-20", "10.00"))
    daily = DailyRecompute(env.settings, env.app.state.sessionmaker)
    due = next_daily_run(datetime(2026, 1, 1, 13, 0, tzinfo=UTC), 2)
    assert due == datetime(2026, 1, 2, 2, 0, tzinfo=UTC)
    assert await daily.run_once(due) == "daily-2026-01-02"
    assert await daily.run_once(due) is None  # a second worker does not run it again
    job = (await env.client.get("/v1/jobs/daily-2026-01-02")).json()
    assert job["status"] == "succeeded"
    assert (await _profile(env, m))["scores_as_of"].startswith("2026-01-02T02:00:00")


async def test_the_distribution_counts_every_profile(fresh_segmentation) -> None:  # type: ignore[no-untyped-def]
    env = fresh_segmentation
    members = [member_id() for _ in range(5)]
    await env.feed(*(enrolled(m) for m in members))
    scores = [("high", "mature", 5, 4), ("high", "new", 5, 4), ("low", "sleeping", 1, 1)]
    async with env.app.state.sessionmaker() as session, session.begin():
        for m, (value, stage, r, f) in zip(members, scores, strict=False):
            await session.execute(
                text(
                    "UPDATE profiles SET value_tier = :v, lifecycle = :l, rfm_r = :r, "
                    "rfm_f = :f WHERE member_id = :m"
                ),
                {"v": value, "l": stage, "r": r, "f": f, "m": m},
            )
    body = (await env.client.get("/v1/analytics/distribution")).json()
    assert body == {
        "profiles": 5,
        "value_tiers": {"high": 2, "low": 1, "unscored": 2},
        "lifecycle": {"mature": 1, "new": 1, "sleeping": 1, "unknown": 2},
        "tiers": {"bronze": 5},
        "rfm_grid": [{"r": 1, "f": 1, "count": 1}, {"r": 5, "f": 4, "count": 2}],
        "rfm_scored": 3,
    }
