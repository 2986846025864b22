"""The NPS formula's one home: score, 95% CI and the minimum sample."""

import math

import pytest

from loyalty_shared.nps import DEFAULT_MIN_SAMPLE, Z95, nps_figure, nps_score


def test_score_and_ci_by_hand() -> None:
    # 5 promoters, 3 passives, 2 detractors: p = 0.5, d = 0.2
    score, (low, high) = nps_score(5, 3, 2)
    margin = 100 * Z95 * math.sqrt((0.5 + 0.2 - 0.3**2) / 10)  # 48.41
    assert score == pytest.approx(30.0)
    assert (low, high) == pytest.approx((30.0 - margin, 30.0 + margin))
    assert margin == pytest.approx(48.4068, abs=1e-3)


def test_ci_is_clipped_to_the_scale_and_zero_width_when_everyone_agrees() -> None:
    assert nps_score(3, 0, 0) == (100.0, [100.0, 100.0])
    score, (low, high) = nps_score(1, 0, 1)
    assert score == 0.0 and (low, high) == (-100.0, 100.0)


def test_hidden_below_the_minimum_sample() -> None:
    assert DEFAULT_MIN_SAMPLE == 30
    small = nps_figure(2, 1, 1, min_sample=5)
    assert (small.responses, small.score, small.ci95, small.hidden) == (4, None, None, True)
    shown = nps_figure(2, 1, 1, min_sample=4)
    assert shown.hidden is False and shown.score == pytest.approx(25.0)
    assert shown.ci95 == pytest.approx(nps_score(2, 1, 1)[1])
    none = nps_figure(0, 0, 0, min_sample=0)
    assert (none.score, none.ci95, none.hidden) == (None, None, False)
