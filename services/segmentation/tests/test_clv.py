"""CLV: the BG/NBD + Gamma-Gamma fit against the published CDNOW parameters, and at recompute."""

import random
from importlib.resources import files

import pandas as pd
import pytest

from segmentation.analytics.clv import fit
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
