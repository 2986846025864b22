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

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.ahp.service import checked, result_out
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
    rows = (
        await session.execute(
            text(
                "SELECT m.tier, "
                "count(*) FILTER (WHERE a.value >= 9), "
                "count(*) FILTER (WHERE a.value BETWEEN 7 AND 8), "
                "count(*) FILTER (WHERE a.value <= 6) "
                "FROM survey_answers a JOIN survey_responses r ON r.id = a.response_id "
                "LEFT JOIN member_projection m ON m.member_id = r.member_id "
                "WHERE a.metric = 'nps' AND a.value IS NOT NULL "
                "AND a.submitted_at >= :s AND a.submitted_at < :e GROUP BY m.tier ORDER BY m.tier"
            ),
            {"s": start, "e": end},
        )
    ).all()
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
    n, total, satisfied = (
        await session.execute(
            text(
                "SELECT count(*), coalesce(sum(value), 0), count(*) FILTER (WHERE value >= 4) "
                "FROM survey_answers WHERE metric = 'csat' AND value IS NOT NULL "
                "AND submitted_at >= :s AND submitted_at < :e"
            ),
            {"s": start, "e": end},
        )
    ).one()
    return Csat(
        responses=n,
        mean=(total / n) if n else None,
        satisfied_share=(satisfied / n) if n else None,
        target=settings.csat_target,
    )


async def _csi(
    session: AsyncSession, hierarchy: HierarchyOut, start: datetime, end: datetime
) -> Csi:
    rows = (
        await session.execute(
            text(
                "SELECT factor, value, count(*) FROM survey_answers "
                "WHERE factor IS NOT NULL AND value IS NOT NULL "
                "AND submitted_at >= :s AND submitted_at < :e GROUP BY factor, value"
            ),
            {"s": start, "e": end},
        )
    ).all()
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
    value = weighted / weight_sum if weight_sum > 0 else None
    return Csi(value=value, complete=not missing, missing_factors=missing, factors=factors)


async def _complaints(
    session: AsyncSession, settings: FeedbackSettings, start: datetime, end: datetime
) -> dict[str, Any]:
    params = {"s": start, "e": end}
    opened, fr_settled, fr_met, res_settled, res_met = (
        await session.execute(
            text(
                "WITH c AS (SELECT c.*, "
                " EXISTS (SELECT 1 FROM sla_breaches b WHERE b.complaint_id = c.id "
                "         AND b.clock = 'first_response') AS fr_b, "
                " EXISTS (SELECT 1 FROM sla_breaches b WHERE b.complaint_id = c.id "
                "         AND b.clock = 'resolution') AS res_b "
                " FROM complaints c WHERE c.created_at >= :s AND c.created_at < :e) "
                "SELECT count(*), "
                " count(*) FILTER (WHERE first_responded_at IS NOT NULL OR fr_b), "
                " count(*) FILTER (WHERE first_responded_at IS NOT NULL AND NOT fr_b), "
                " count(*) FILTER (WHERE status IN ('resolved', 'closed') OR res_b), "
                " count(*) FILTER (WHERE status IN ('resolved', 'closed') AND NOT res_b) "
                "FROM c"
            ),
            params,
        )
    ).one()
    mean_first = (
        await session.execute(
            text(
                "SELECT avg(extract(epoch FROM first_responded_at - created_at)) / 60 "
                "FROM complaints WHERE first_responded_at >= :s AND first_responded_at < :e"
            ),
            params,
        )
    ).scalar_one()
    resolved, fcr, mean_resolution, covered = (
        await session.execute(
            text(
                "SELECT count(*), "
                " count(*) FILTER (WHERE escalated_at IS NULL AND NOT handed_over "
                "                  AND reopen_count = 0), "
                " avg(extract(epoch FROM first_resolved_at - created_at)) / 60, "
                " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM follow_ups f "
                "   WHERE f.complaint_id = c.id AND f.reason = 'post_resolution' "
                "   AND f.status = 'completed')) "
                "FROM complaints c WHERE first_resolved_at >= :s AND first_resolved_at < :e"
            ),
            params,
        )
    ).one()
    causes = (
        await session.execute(
            text(
                "SELECT coalesce(cause, category) AS k, count(*) AS n FROM complaints "
                "WHERE created_at >= :s AND created_at < :e GROUP BY k ORDER BY n DESC, k"
            ),
            params,
        )
    ).all()
    orders = (
        await session.execute(
            text("SELECT count(*) FROM order_facts WHERE occurred_at >= :s AND occurred_at < :e"),
            params,
        )
    ).scalar_one()
    completed, rectified = (
        await session.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE rectified) FROM follow_ups "
                "WHERE status = 'completed' AND rectified IS NOT NULL "
                "AND completed_at >= :s AND completed_at < :e"
            ),
            params,
        )
    ).one()
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
    return {
        "complaints_opened": opened,
        "complaint_rate": _rate(opened, orders),
        "fcr": _rate(fcr, resolved, settings.fcr_target),
        "sla_compliance": SlaCompliance(
            first_response=_rate(fr_met, fr_settled),
            resolution=_rate(res_met, res_settled),
            overall=_rate(fr_met + res_met, fr_settled + res_settled),
        ),
        "mean_minutes_to_first_response": float(mean_first) if mean_first is not None else None,
        "mean_minutes_to_resolution": float(mean_resolution)
        if mean_resolution is not None
        else None,
        "causes": pareto,
        "follow_up_coverage": _rate(covered, resolved, settings.follow_up_coverage_target),
        "rectification": _rate(rectified, completed, settings.rectification_target),
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
