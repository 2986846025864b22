"""Net Promoter Score with its 95% confidence interval, and when a sample is too small to show.

One home for the formula (DOMAIN.md, Formulas), used by feedback's metrics and
segmentation's KPIs:

- NPS = % of 9-10 answers - % of 0-6 answers (-100..100);
- its 95% CI from the variance of the per-answer score (+1 promoter, 0 passive,
  -1 detractor): var = p + d - (p - d)^2, se = sqrt(var / n), NPS +/- 100 * z * se
  (normal approximation), clipped to -100..100;
- below a minimum number of answers (``DEFAULT_MIN_SAMPLE`` unless a service sets its
  own) the score is hidden: null, with the count shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
DEFAULT_MIN_SAMPLE = 30


def nps_score(promoters: int, passives: int, detractors: int) -> tuple[float, list[float]]:
    """The score and its 95% CI [low, high]; at least one answer."""
    n = promoters + passives + detractors
    p, d = promoters / n, detractors / n
    score = 100.0 * (p - d)
    variance = p + d - (p - d) ** 2
    margin = 100.0 * Z95 * math.sqrt(max(variance, 0.0) / n)
    return score, [max(score - margin, -100.0), min(score + margin, 100.0)]


@dataclass(frozen=True)
class NpsFigure:
    responses: int
    score: float | None  # null when hidden or without answers
    ci95: list[float] | None
    hidden: bool  # responses < min_sample


def nps_figure(promoters: int, passives: int, detractors: int, min_sample: int) -> NpsFigure:
    n = promoters + passives + detractors
    hidden = n < min_sample
    if hidden or n == 0:
        return NpsFigure(n, None, None, hidden)
    score, ci = nps_score(promoters, passives, detractors)
    return NpsFigure(n, score, ci, hidden)
