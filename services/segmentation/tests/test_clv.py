"""CLV: the BG/NBD + Gamma-Gamma fit against the published CDNOW parameters, and at recompute."""

import random
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest

from segmentation.analytics import clv
from segmentation.analytics.clv import fit, patterns
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id, order


def test_fit_reproduces_published_cdnow_parameters() -> None:
    # The CDNOW sample shipped in the lifetimes wheel (2,357 customers, weeks).
    # Fader, Hardie & Lee (2005): r=0.243, alpha=4.414, a=0.793, b=2.426.
    path = files("lifetimes") / "datasets" / "cdnow_customers_summary_with_transactions.csv"
    summary = pd.read_csv(str(path))
    summary = summary.rename(columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"})
    result = fit(summary[["frequency", "recency", "T", "monetary_value"]], horizon=13)
    assert result.bgnbd is not None
    assert result.bgnbd["r"] == pytest.approx(0.243, abs=0.002)
    assert result.bgnbd["alpha"] == pytest.approx(4.414, abs=0.01)
    assert result.bgnbd["a"] == pytest.approx(0.793, abs=0.005)
    assert result.bgnbd["b"] == pytest.approx(2.426, abs=0.01)
    # Gamma-Gamma on the same sample (Fader & Hardie's note): p=6.25, q=3.74, v=15.44
    assert result.gamma_gamma is not None
    assert result.gamma_gamma["p"] == pytest.approx(6.25, abs=0.05)
    assert result.gamma_gamma["q"] == pytest.approx(3.74, abs=0.05)
    assert result.gamma_gamma["v"] == pytest.approx(15.44, abs=0.2)
    assert result.p_alive is not None and ((result.p_alive >= 0) & (result.p_alive <= 1)).all()


async def test_recompute_fits_clv_and_scores_profiles(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    rng = random.Random(7)
    members = [member_id() for _ in range(60)]
    for i, m in enumerate(members):
        events = [enrolled(m)]
        n = 1 + (i % 6)
        for _ in range(n):
            day = rng.randrange(0, 300)
            month, dom = 1 + day // 28 % 12, 1 + day % 28
            events.append(order(m, f"2025-{month:02d}-{dom:02d}", f"{rng.randrange(20, 200)}.00"))
        await env.feed(*events)
    await env.recompute("2026-01-01T00:00:00+00:00")
    model = (await env.client.get("/v1/analytics/clv-model")).json()
    assert model["customers"] == 60 and model["bgnbd"]["time_unit"] == "day"
    assert set(model["bgnbd"]) >= {"r", "alpha", "a", "b"}
    assert set(model["gamma_gamma"]) == {"p", "q", "v"}
    profile = (await env.client.get(f"/v1/profiles/{members[5]}")).json()
    clv = profile["clv"]
    assert 0 <= clv["p_alive"] <= 1
    assert clv["expected_purchases_90d"] > 0
    assert float(clv["expected_value"]) > 0
    assert clv["churn_risk"] == pytest.approx(1 - clv["p_alive"], abs=1e-6)


async def test_clv_model_404_before_any_fit(fresh_segmentation: FreshSegmentation) -> None:
    response = await fresh_segmentation.client.get("/v1/analytics/clv-model")
    assert response.status_code == 404
    assert response.json()["type"].endswith("clv-model-not-fitted")


def _generated(n: int) -> pd.DataFrame:
    """n members drawn from a BG/NBD process (CDNOW's parameters, in days), seeded: each
    buys at rate lambda ~ Gamma(r, alpha) and may drop out after each purchase with
    p ~ Beta(a, b); ages from 30 to 730 days."""
    rng = np.random.default_rng(18)
    age = rng.integers(30, 730, n).astype(float)
    rate = rng.gamma(0.243, 1 / (4.414 * 7), n)
    dropout = rng.beta(0.793, 2.426, n)
    now, repeat, last = np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        then = now + rng.exponential(1 / rate)
        buys = alive & (then < age)
        repeat[buys] += 1
        last[buys] = then[buys]
        now = np.where(buys, then, now)
        alive = buys & (rng.random(n) >= dropout)
    # Gamma-Gamma (CDNOW's p, q, gamma): the mean of x spends of scale 1/nu, nu ~ Gamma(q, gamma)
    nu = rng.gamma(3.74, 1 / 15.44, n)
    spend = rng.gamma(6.25 * np.maximum(repeat, 1), 1 / (nu * np.maximum(repeat, 1)))
    return pd.DataFrame(
        {
            "frequency": repeat,
            "recency": np.floor(last),
            "T": age,
            "monetary_value": np.where(repeat > 0, spend, 0.0),
        }
    )


def test_fit_on_patterns_is_the_fit_on_members() -> None:
    summary = _generated(3000)
    by_pattern = fit(summary)
    assert by_pattern.bgnbd is not None and by_pattern.gamma_gamma is not None
    (f, _r, _t), weights, note = patterns(
        [summary[c].to_numpy() for c in ("frequency", "recency", "T")]
    )
    assert note is None and len(f) < 3000 and weights.sum() == 3000
    from lifetimes import BetaGeoFitter  # type: ignore[import-untyped]

    one_row_each = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    for name, value in one_row_each.params_.items():
        assert by_pattern.bgnbd[name] == pytest.approx(value, rel=1e-3)


def test_sampled_fit_within_tolerance_of_the_full_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20,000 members; a model fitted on a sample of 5,000 (the seed of production) moves
    # each parameter by at most 25% and the 90-day predictions by 0.02 purchases on average
    summary = _generated(20_000)
    full = fit(summary)
    monkeypatch.setattr(clv, "FIT_PATTERNS", 1000)
    monkeypatch.setattr(clv, "SAMPLE_MEMBERS", 5000)
    sampled = fit(summary)
    assert sampled.note is not None and "sample of 5,000 of 20,000" in sampled.note
    assert full.note is None
    for model in ("bgnbd", "gamma_gamma"):
        want, got = getattr(full, model), getattr(sampled, model)
        for name, value in want.items():
            assert got[name] == pytest.approx(value, rel=0.25), (model, name)
    assert full.expected_purchases is not None and sampled.expected_purchases is not None
    assert np.abs(full.expected_purchases - sampled.expected_purchases).mean() < 0.02
    assert full.p_alive is not None and sampled.p_alive is not None
    assert np.abs(full.p_alive - sampled.p_alive).mean() < 0.02
