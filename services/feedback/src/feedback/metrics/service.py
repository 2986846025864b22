"""Satisfaction and service metrics over a period, against the previous period of equal length.

Formulas (DOMAIN.md, Formulas):
- NPS = % of 9-10 answers - % of 0-6 answers; 95% CI from the variance of the
  per-answer score (+1 promoter, 0 passive, -1 detractor): se = sqrt(var / n)
  (``loyalty_shared.nps``, which segmentation's KPIs use too).
- CSAT = mean of the 1-5 ratings.
- DC_i = sum_j x_ij n_ij / (x_max sum_j n_ij) with x_max = 5; CSI = sum_i w_i DC_i,
  w_i the global AHP weights of the configured hierarchy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from feedback.ahp.service import checked, result_out
from feedback.metrics import repository
from feedback.metrics.models import CsiHierarchy
from feedback.metrics.schemas import (
    Csat,
    Csi,
    CsiFactor,
    FactorWeight,
    HierarchyIn,
    HierarchyOut,
    MetricsOut,
    Nps,
    NpsSlice,
    ParetoItem,
    Period,
    PeriodMetrics,
    Rate,
    SlaCompliance,
)
from feedback.settings import FeedbackSettings
from loyalty_shared import ahp
from loyalty_shared.nps import nps_score
from loyalty_shared.problems import Unprocessable

X_MAX = 5
PARETO_CUT = 0.8
HIERARCHY_ID = "default"


class InvalidHierarchy(Unprocessable):
    slug = "invalid-hierarchy"
    title = "Invalid CSI hierarchy"


class InvalidPeriod(Unprocessable):
    slug = "validation-error"
    title = "Request validation failed"


# The brief's 13 satisfaction factors in three criteria; equal judgments until ops set theirs.
DEFAULT_CRITERIA: list[dict[str, Any]] = [
    {
        "key": "perception",
        "name": "Perception of the service",
        "factors": [
            {"key": "corporate_image", "name": "Corporate image"},
            {"key": "customer_care", "name": "Customer care"},
            {"key": "service_attitude", "name": "Service attitude"},
            {"key": "service_procedures", "name": "Service procedures"},
            {"key": "satisfaction_in_use", "name": "Satisfaction in use"},
        ],
    },
    {
        "key": "quality",
        "name": "Service quality",
        "factors": [
            {"key": "reliability", "name": "Reliability"},
            {"key": "security", "name": "Security"},
            {"key": "transaction_speed", "name": "Speed of transaction"},
            {"key": "error_rate", "name": "Error rate"},
        ],
    },
    {
        "key": "benefit",
        "name": "Benefit to the customer",
        "factors": [
            {"key": "profit_gained", "name": "Profit gained"},
            {"key": "cost_saved", "name": "Cost saved"},
            {"key": "benefit_obtained", "name": "Benefit obtained"},
            {"key": "loyalty_rewards", "name": "Loyalty rewards received"},
        ],
    },
]


def _ones(n: int) -> list[list[float]]:
    return [[1.0] * n for _ in range(n)]


def default_hierarchy() -> HierarchyIn:
    return HierarchyIn.model_validate(
        {
            "criteria": DEFAULT_CRITERIA,
            "criteria_matrix": _ones(len(DEFAULT_CRITERIA)),
            "factor_matrices": {c["key"]: _ones(len(c["factors"])) for c in DEFAULT_CRITERIA},
        }
    )


def evaluate_hierarchy(data: HierarchyIn, *, is_default: bool = False) -> HierarchyOut:
    keys = [f.key for c in data.criteria for f in c.factors]
    if len(set(keys)) != len(keys):
        raise InvalidHierarchy(
            "factor keys must be unique across the hierarchy",
            errors=[
                {"field": "body.criteria", "message": "duplicate factor key", "type": "unique"}
            ],
        )
    if len({c.key for c in data.criteria}) != len(data.criteria):
        raise InvalidHierarchy(
            "criterion keys must be unique",
            errors=[
                {"field": "body.criteria", "message": "duplicate criterion key", "type": "unique"}
            ],
        )
    if len(data.criteria_matrix) != len(data.criteria):
        raise InvalidHierarchy(
            f"criteria_matrix must be {len(data.criteria)} x {len(data.criteria)}",
            errors=[{"field": "body.criteria_matrix", "message": "size", "type": "size"}],
        )
    criteria_result = checked(data.criteria_matrix, "body.criteria_matrix")
    local: list[ahp.AHPResult] = []
    for c in data.criteria:
        matrix = data.factor_matrices.get(c.key)
        field = f"body.factor_matrices.{c.key}"
        if matrix is None or len(matrix) != len(c.factors):
            raise InvalidHierarchy(
                f"factor_matrices.{c.key} must be {len(c.factors)} x {len(c.factors)}",
                errors=[{"field": field, "message": "missing or wrong size", "type": "size"}],
            )
        local.append(checked(matrix, field))
    extra = set(data.factor_matrices) - {c.key for c in data.criteria}
    if extra:
        raise InvalidHierarchy(
            f"factor_matrices for unknown criteria: {', '.join(sorted(extra))}",
            errors=[
                {"field": "body.factor_matrices", "message": "unknown criterion", "type": "unknown"}
            ],
        )
    total = ahp.combine(criteria_result, local)
    factor_weights: list[FactorWeight] = []
    i = 0
    for c, result in zip(data.criteria, local, strict=True):
        for f, lw in zip(c.factors, result.weights, strict=True):
            factor_weights.append(
                FactorWeight(
                    key=f.key, name=f.name, criterion=c.key, local_weight=lw, weight=total[i]
                )
            )
            i += 1
    criteria_weights = {"criteria": result_out(criteria_result, [c.key for c in data.criteria])}
    for c, result in zip(data.criteria, local, strict=True):
        criteria_weights[c.key] = result_out(result, [f.key for f in c.factors])
    return HierarchyOut(
        criteria=data.criteria,
        criteria_matrix=data.criteria_matrix,
        factor_matrices=data.factor_matrices,
        criteria_weights=criteria_weights,
        factor_weights=factor_weights,
        is_default=is_default,
    )


async def get_hierarchy(session: AsyncSession) -> HierarchyOut:
    row = await session.get(CsiHierarchy, HIERARCHY_ID)
    if row is None:
        return evaluate_hierarchy(default_hierarchy(), is_default=True)
    return evaluate_hierarchy(HierarchyIn.model_validate(row.config))


async def put_hierarchy(session: AsyncSession, data: HierarchyIn, now: datetime) -> HierarchyOut:
    out = evaluate_hierarchy(data)
    row = await session.get(CsiHierarchy, HIERARCHY_ID, with_for_update=True)
    config = data.model_dump(mode="json")
    if row is None:
        session.add(CsiHierarchy(id=HIERARCHY_ID, config=config, updated_at=now))
    else:
        row.config = config
        row.updated_at = now
    await session.flush()
    return out


def _rate(num: int, den: int, target: float | None = None) -> Rate:
    return Rate(numerator=num, denominator=den, rate=(num / den) if den else None, target=target)


async def _nps(
    session: AsyncSession, settings: FeedbackSettings, start: datetime, end: datetime
) -> Nps:
    rows = await repository.nps_by_tier(session, start, end)
    minimum = settings.nps_min_sample
    slices: list[NpsSlice] = []
    promoters = passives = detractors = 0
    for tier, p, pa, d in rows:
        promoters, passives, detractors = promoters + p, passives + pa, detractors + d
        n = p + pa + d
        hidden = n < minimum
        slices.append(
            NpsSlice(
                tier=tier,
                responses=n,
                score=None if hidden else nps_score(p, pa, d)[0],
                hidden=hidden,
            )
        )
    n = promoters + passives + detractors
    hidden = n < minimum
    score, ci = (None, None) if hidden or n == 0 else nps_score(promoters, passives, detractors)
    return Nps(
        responses=n,
        promoters=promoters,
        passives=passives,
        detractors=detractors,
        score=score,
        ci95=ci,
        hidden=hidden,
        min_sample=minimum,
        target=settings.nps_target,
        by_tier=slices,
    )


async def _csat(
    session: AsyncSession, settings: FeedbackSettings, start: datetime, end: datetime
) -> Csat:
    n, total, satisfied = await repository.csat_totals(session, start, end)
    return Csat(
        responses=n,
        mean=(total / n) if n else None,
        satisfied_share=(satisfied / n) if n else None,
        target=settings.csat_target,
    )


async def _csi(
    session: AsyncSession, hierarchy: HierarchyOut, start: datetime, end: datetime
) -> Csi:
    rows = await repository.csi_answers(session, start, end)
    sums: dict[str, list[int]] = {}
    for factor, value, count in rows:
        acc = sums.setdefault(factor, [0, 0])
        acc[0] += value * count
        acc[1] += count
    factors: list[CsiFactor] = []
    weighted = weight_sum = 0.0
    missing: list[str] = []
    for fw in hierarchy.factor_weights:
        xn, n = sums.get(fw.key, [0, 0])
        dc = xn / (X_MAX * n) if n else None
        if dc is None:
            missing.append(fw.key)
        else:
            weighted += fw.weight * dc
            weight_sum += fw.weight
        factors.append(
            CsiFactor(key=fw.key, criterion=fw.criterion, weight=fw.weight, answers=n, dc=dc)
        )
    index = weighted / weight_sum if weight_sum > 0 else None
    return Csi(value=index, complete=not missing, missing_factors=missing, factors=factors)


def _pareto(causes: Sequence[tuple[str, int]], opened: int) -> list[ParetoItem]:
    """Causes by count, each with its share and the running share; the vital few are those
    up to the one that reaches ``PARETO_CUT``."""
    pareto: list[ParetoItem] = []
    cumulative = 0
    reached = False
    for cause, count in causes:
        cumulative += count
        pareto.append(
            ParetoItem(
                cause=cause,
                count=count,
                share=count / opened,
                cumulative_share=cumulative / opened,
                vital_few=not reached,
            )
        )
        reached = reached or cumulative / opened >= PARETO_CUT
    return pareto


def _minutes(value: Any) -> float | None:
    return float(value) if value is not None else None


async def _complaints(
    session: AsyncSession, settings: FeedbackSettings, start: datetime, end: datetime
) -> dict[str, Any]:
    f = await repository.complaint_facts(session, start, end)
    return {
        "complaints_opened": f.opened,
        "complaint_rate": _rate(f.opened, f.orders),
        "fcr": _rate(f.first_contact, f.resolved, settings.fcr_target),
        "sla_compliance": SlaCompliance(
            first_response=_rate(f.first_response_met, f.first_response_settled),
            resolution=_rate(f.resolution_met, f.resolution_settled),
            overall=_rate(
                f.first_response_met + f.resolution_met,
                f.first_response_settled + f.resolution_settled,
            ),
        ),
        "mean_minutes_to_first_response": _minutes(f.mean_first_response),
        "mean_minutes_to_resolution": _minutes(f.mean_resolution),
        "causes": _pareto(f.causes, f.opened),
        "follow_up_coverage": _rate(f.followed_up, f.resolved, settings.follow_up_coverage_target),
        "rectification": _rate(f.rectified, f.completed, settings.rectification_target),
    }


async def period_metrics(
    session: AsyncSession,
    settings: FeedbackSettings,
    hierarchy: HierarchyOut,
    start: datetime,
    end: datetime,
) -> PeriodMetrics:
    return PeriodMetrics(
        nps=await _nps(session, settings, start, end),
        csat=await _csat(session, settings, start, end),
        csi=await _csi(session, hierarchy, start, end),
        **await _complaints(session, settings, start, end),
    )


async def metrics(
    session: AsyncSession, settings: FeedbackSettings, start: datetime, end: datetime
) -> MetricsOut:
    if end <= start:
        raise InvalidPeriod(
            "`from` must be before `to`",
            errors=[{"field": "query.from", "message": "must be before to", "type": "value_error"}],
        )
    hierarchy = await get_hierarchy(session)
    previous_start = start - (end - start)
    return MetricsOut(
        period=Period.model_validate({"from": start, "to": end}),
        previous_period=Period.model_validate({"from": previous_start, "to": start}),
        current=await period_metrics(session, settings, hierarchy, start, end),
        previous=await period_metrics(session, settings, hierarchy, previous_start, start),
    )
