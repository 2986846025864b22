"""Ops KPIs over a period [from, to) with the previous period of the same length beside them,
the brief's target beside each KPI it sets one for, and optional breakdowns per tier, value
tier or segment (``by``). Exact definitions: ``DEFINITIONS`` (returned with the figures) and
docs/segmentation.md.

One SQL pass per period: per member facts (orders, activities, survey answers, complaints)
then the same aggregates over everyone and over each group of each requested dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.nps import DEFAULT_MIN_SAMPLE, nps_figure

Dimension = Literal["tier", "value_tier", "segment"]
DIMENSIONS: tuple[Dimension, ...] = ("tier", "value_tier", "segment")

_FROM_FEEDBACK = " (from the feedback service's events)"

DEFINITIONS = {
    "members": "members enrolled (or first ordering) before 'to' that have a profile",
    "revenue": "order amounts minus refunds made before 'to', orders placed in the period",
    "buyers": "members with at least one order in the period",
    "orders": "orders placed in the period",
    "repurchase_rate": "buyers with 2+ orders in the period / buyers",
    "churn_rate": "members who ordered in the period of the same length before 'from' and "
    "not in the period / those members",
    "core_customer_retention_rate": "the same members restricted to value tier high (last "
    "recompute): those who ordered again in the period / them",
    "average_ltv": "mean net spend per customer of all their orders before 'to'",
    "average_spend_per_buyer": "revenue / buyers",
    "average_annual_spend": "mean net spend in the 365 days before 'to' per customer with an "
    "order in those days",
    "active_rate": "members with an order or an interaction in the period / members",
    "monthly_active_rate": "members with an order or an interaction in the 30 days before "
    "'to' / members",
    "participation_rate": "members who took part in the programme in the period (redemption, "
    "check-in, review, share, referral, activity, survey) / members",
    "high_value_revenue_share": "revenue from members whose value tier is high (last "
    "recompute) / revenue",
    "nps": "% of 9-10 answers - % of 0-6 answers (-100..100) over the NPS answers submitted "
    "in the period; null (hidden) below the minimum sample (nps_hidden)" + _FROM_FEEDBACK,
    "nps_ci95": "the NPS's 95% confidence interval [low, high] (normal approximation of the "
    "per-answer score +1/0/-1, as feedback's metrics); null when the NPS is" + _FROM_FEEDBACK,
    "nps_hidden": "true when the period has fewer NPS answers than the minimum sample "
    "(SEGMENTATION_NPS_MIN_SAMPLE)",
    "nps_responses": "NPS answers submitted in the period" + _FROM_FEEDBACK,
    "csat": "mean of the 1-5 CSAT answers submitted in the period" + _FROM_FEEDBACK,
    "satisfied_share": "CSAT answers of 4 or 5 / CSAT answers, in the period" + _FROM_FEEDBACK,
    "csat_responses": "CSAT answers submitted in the period" + _FROM_FEEDBACK,
    "complaints": "complaints opened in the period" + _FROM_FEEDBACK,
    "complaint_rate": "complaints opened in the period / orders placed in the period"
    + _FROM_FEEDBACK,
    "sla_compliance": "over complaints opened in the period, both clocks: clocks stopped "
    "without a breach / clocks stopped or breached (first response stops at acknowledge or "
    "resolve, resolution at resolve; current state)" + _FROM_FEEDBACK,
    "first_contact_resolution_rate": "complaints first resolved in the period without "
    "escalation, hand-over or reopen / complaints first resolved in the period" + _FROM_FEEDBACK,
    "follow_up_coverage": "complaints first resolved in the period whose post-resolution "
    "follow-up is completed / those complaints" + _FROM_FEEDBACK,
    "tier_distribution": "members per tier as of 'to' (tier history)",
    "segment_sizes": "members per segment as of 'to' (segment history)",
}

BREAKDOWN_DEFINITIONS = {
    "tier": "the member's loyalty tier at the end of each period (tier history); 'none' "
    "when no tier is known",
    "value_tier": "the member's value tier from the last recompute (no history: the same "
    "grouping for both periods; every profile has one after a recompute, low without an "
    "order); 'unscored' for profiles created since the last recompute",
    "segment": "segments the member belonged to at the end of each period (segment "
    "history); a member counts in each of their segments, members of none are in no group",
}


@dataclass(frozen=True)
class Target:
    op: Literal[">=", "<=", ">"]
    basis: str
    value: float | None = None  # absolute
    stretch: float | None = None
    relative: tuple[float, float] | None = None  # growth on the previous period (min, stretch)


# "Targets the brief sets for the business" (DOMAIN.md). Relative ones ("repurchase
# +20-30%") take the previous period shown beside the figure as the baseline.
TARGETS: dict[str, Target] = {
    "repurchase_rate": Target(
        ">=", "repurchase +20-30% on the previous period", relative=(0.20, 0.30)
    ),
    "average_ltv": Target(">=", "LTV +25-40% on the previous period", relative=(0.25, 0.40)),
    "churn_rate": Target("<=", "churn <= 15% (stretch < 5%)", value=0.15, stretch=0.05),
    "core_customer_retention_rate": Target(">=", "core-customer retention 95%", value=0.95),
    "participation_rate": Target(">=", "programme participation 70%", value=0.70),
    "nps": Target(">", "NPS > 60", value=60.0),
    "csat": Target(">=", "CSAT 4.5 of 5", value=4.5),
    "satisfied_share": Target(">=", "satisfaction >= 90%", value=0.90),
    "first_contact_resolution_rate": Target(">=", "first-contact resolution >= 85%", value=0.85),
    "follow_up_coverage": Target(">=", "follow-up coverage 100%", value=1.0),
}

_PARTICIPATION = (
    "'redemption', 'check_in', 'checkin', 'review', 'share', 'referral', 'activity', 'survey'"
)

_FACTS = f"""
WITH refunds AS (
    SELECT order_id, sum(amount) AS refunded FROM order_refunds
    WHERE occurred_at < :to GROUP BY order_id
), net AS (
    SELECT o.member_id, o.occurred_at, o.amount - COALESCE(r.refunded, 0) AS net
    FROM member_orders o LEFT JOIN refunds r ON r.order_id = o.order_id
    WHERE o.occurred_at < :to
), om AS (
    SELECT member_id,
           count(*) FILTER (WHERE occurred_at >= :from) AS orders,
           sum(net) FILTER (WHERE occurred_at >= :from) AS revenue,
           sum(net) AS ltv,
           bool_or(occurred_at >= :before AND occurred_at < :from) AS bought_before,
           sum(net) FILTER (WHERE occurred_at >= :year_ago) AS spend_365,
           bool_or(occurred_at >= :month_ago) AS ordered_30d
    FROM net GROUP BY member_id
), acts AS (
    SELECT member_id,
           bool_or(occurred_at >= :from) AS active,
           bool_or(occurred_at >= :from AND kind IN ({_PARTICIPATION})) AS participant,
           bool_or(occurred_at >= :month_ago) AS active_30d
    FROM member_activities
    WHERE occurred_at >= LEAST(:from, :month_ago) AND occurred_at < :to
    GROUP BY member_id
), surveys AS (
    SELECT member_id,
           count(nps) AS nps_n,
           count(*) FILTER (WHERE nps >= 9) AS promoters,
           count(*) FILTER (WHERE nps <= 6) AS detractors,
           count(csat) AS csat_n,
           sum(csat) AS csat_sum,
           count(*) FILTER (WHERE csat >= 4) AS satisfied
    FROM survey_scores WHERE submitted_at >= :from AND submitted_at < :to
    GROUP BY member_id
), cx AS (
    SELECT member_id,
           count(*) FILTER (WHERE opened) AS complaints,
           count(*) FILTER (WHERE opened AND (first_responded_at IS NOT NULL
                                              OR first_response_breached)) AS fr_settled,
           count(*) FILTER (WHERE opened AND first_responded_at IS NOT NULL
                                         AND NOT first_response_breached) AS fr_met,
           count(*) FILTER (WHERE opened AND (status IN ('resolved', 'closed')
                                              OR resolution_breached)) AS res_settled,
           count(*) FILTER (WHERE opened AND status IN ('resolved', 'closed')
                                         AND NOT resolution_breached) AS res_met,
           count(*) FILTER (WHERE resolved) AS resolved,
           count(*) FILTER (WHERE resolved AND first_contact_resolution) AS fcr,
           count(*) FILTER (WHERE resolved AND follow_up_completed) AS covered
    FROM (
        SELECT c.*,
               COALESCE(opened_at >= :from AND opened_at < :to, false) AS opened,
               COALESCE(first_resolved_at >= :from AND first_resolved_at < :to, false)
                   AS resolved
        FROM complaint_facts c
        WHERE (opened_at >= :from AND opened_at < :to)
           OR (first_resolved_at >= :from AND first_resolved_at < :to)
    ) c
    GROUP BY member_id
), ids AS (
    SELECT member_id FROM om
    UNION SELECT member_id FROM acts
    UNION SELECT member_id FROM surveys
    UNION SELECT member_id FROM cx
    UNION SELECT member_id FROM profiles WHERE COALESCE(enrolled_at, first_order_at) < :to
), facts AS (
    SELECT i.member_id,
           COALESCE(COALESCE(p.enrolled_at, p.first_order_at) < :to, false) AS enrolled,
           COALESCE(p.value_tier = 'high', false) AS high,
           p.value_tier,
           COALESCE(om.orders, 0) AS orders,
           COALESCE(om.revenue, 0) AS revenue,
           om.ltv,
           COALESCE(om.bought_before, false) AS bought_before,
           om.spend_365,
           COALESCE(om.ordered_30d, false) AS ordered_30d,
           COALESCE(a.active, false) AS active,
           COALESCE(a.participant, false) AS participant,
           COALESCE(a.active_30d, false) AS active_30d,
           COALESCE(s.nps_n, 0) AS nps_n, COALESCE(s.promoters, 0) AS promoters,
           COALESCE(s.detractors, 0) AS detractors, COALESCE(s.csat_n, 0) AS csat_n,
           COALESCE(s.csat_sum, 0) AS csat_sum, COALESCE(s.satisfied, 0) AS satisfied,
           COALESCE(cx.complaints, 0) AS complaints,
           COALESCE(cx.fr_settled, 0) AS fr_settled, COALESCE(cx.fr_met, 0) AS fr_met,
           COALESCE(cx.res_settled, 0) AS res_settled, COALESCE(cx.res_met, 0) AS res_met,
           COALESCE(cx.resolved, 0) AS resolved, COALESCE(cx.fcr, 0) AS fcr,
           COALESCE(cx.covered, 0) AS covered
    FROM ids i
    LEFT JOIN profiles p ON p.member_id = i.member_id
    LEFT JOIN om ON om.member_id = i.member_id
    LEFT JOIN acts a ON a.member_id = i.member_id
    LEFT JOIN surveys s ON s.member_id = i.member_id
    LEFT JOIN cx ON cx.member_id = i.member_id
)"""

_AGGREGATES = """
    count(*) FILTER (WHERE enrolled) AS members,
    count(*) FILTER (WHERE orders > 0) AS buyers,
    count(*) FILTER (WHERE orders >= 2) AS repeat_buyers,
    CAST(COALESCE(sum(orders), 0) AS bigint) AS orders,
    COALESCE(sum(revenue), 0) AS revenue,
    count(*) FILTER (WHERE bought_before) AS before_buyers,
    count(*) FILTER (WHERE bought_before AND orders = 0) AS churned,
    count(*) FILTER (WHERE bought_before AND high) AS core_before,
    count(*) FILTER (WHERE bought_before AND high AND orders > 0) AS core_retained,
    avg(ltv) AS average_ltv,
    avg(spend_365) AS average_annual_spend,
    count(*) FILTER (WHERE enrolled AND (orders > 0 OR active)) AS active,
    count(*) FILTER (WHERE enrolled AND (ordered_30d OR active_30d)) AS monthly_active,
    count(*) FILTER (WHERE enrolled AND participant) AS participants,
    COALESCE(sum(revenue) FILTER (WHERE high), 0) AS high_value_revenue,
    CAST(COALESCE(sum(nps_n), 0) AS bigint) AS nps_n,
    CAST(COALESCE(sum(promoters), 0) AS bigint) AS promoters,
    CAST(COALESCE(sum(detractors), 0) AS bigint) AS detractors,
    CAST(COALESCE(sum(csat_n), 0) AS bigint) AS csat_n,
    COALESCE(sum(csat_sum), 0) AS csat_sum,
    CAST(COALESCE(sum(satisfied), 0) AS bigint) AS satisfied,
    CAST(COALESCE(sum(complaints), 0) AS bigint) AS complaints,
    CAST(COALESCE(sum(fr_settled), 0) AS bigint) AS fr_settled,
    CAST(COALESCE(sum(fr_met), 0) AS bigint) AS fr_met,
    CAST(COALESCE(sum(res_settled), 0) AS bigint) AS res_settled,
    CAST(COALESCE(sum(res_met), 0) AS bigint) AS res_met,
    CAST(COALESCE(sum(resolved), 0) AS bigint) AS resolved,
    CAST(COALESCE(sum(fcr), 0) AS bigint) AS fcr,
    CAST(COALESCE(sum(covered), 0) AS bigint) AS covered"""

# each: (member_id, key, label) for the members of ``facts``
_GROUPS: dict[Dimension, str] = {
    "tier": """
        SELECT f.member_id, COALESCE(t.tier, 'none') AS key, COALESCE(t.tier, 'none') AS label
        FROM facts f LEFT JOIN (
            SELECT DISTINCT ON (member_id) member_id, tier FROM tier_changes
            WHERE changed_at < :to ORDER BY member_id, changed_at DESC, event_id
        ) t ON t.member_id = f.member_id""",
    "value_tier": """
        SELECT member_id, COALESCE(value_tier, 'unscored') AS key,
               COALESCE(value_tier, 'unscored') AS label
        FROM facts""",
    "segment": """
        SELECT h.member_id, h.segment_id AS key, s.name AS label FROM (
            SELECT DISTINCT ON (segment_id, member_id) segment_id, member_id, action
            FROM segment_history WHERE at < :to
            ORDER BY segment_id, member_id, at DESC, id DESC
        ) h JOIN segments s ON s.segment_id = h.segment_id
        WHERE h.action = 'entered'""",
}

_TIERS = """
SELECT tier, count(*) FROM (
    SELECT DISTINCT ON (member_id) member_id, tier FROM tier_changes
    WHERE changed_at < :to ORDER BY member_id, changed_at DESC, event_id
) t WHERE EXISTS (SELECT 1 FROM profiles p WHERE p.member_id = t.member_id)
GROUP BY tier ORDER BY tier
"""

_SEGMENTS = """
SELECT s.name, count(h.member_id) FROM segments s LEFT JOIN (
    SELECT DISTINCT ON (segment_id, member_id) segment_id, member_id, action FROM segment_history
    WHERE at < :to ORDER BY segment_id, member_id, at DESC, id DESC
) h ON h.segment_id = s.segment_id AND h.action = 'entered'
GROUP BY s.name ORDER BY s.name
"""

_CENTS = Decimal("0.01")


def _sql(by: tuple[Dimension, ...]) -> str:
    ctes = "".join(f",\ngroups_{d} AS ({_GROUPS[d]}\n)" for d in by)
    selects = [
        f"SELECT CAST(NULL AS text) AS dim, CAST(NULL AS text) AS key, "
        f"CAST(NULL AS text) AS label,{_AGGREGATES}\nFROM facts"
    ]
    for d in by:
        selects.append(
            f"SELECT '{d}', g.key, max(g.label),{_AGGREGATES}\n"
            f"FROM facts JOIN groups_{d} g ON g.member_id = facts.member_id GROUP BY g.key"
        )
    return _FACTS + ctes + "\n" + "\nUNION ALL\n".join(selects)


def _rate(num: int, den: int, digits: int = 4) -> float | None:
    return round(num / den, digits) if den else None


def _money(value: Any) -> str | None:
    return str(Decimal(value).quantize(_CENTS)) if value is not None else None


def _nps(row: Any, min_sample: int) -> dict[str, Any]:
    passives = int(row.nps_n - row.promoters - row.detractors)
    figure = nps_figure(int(row.promoters), passives, int(row.detractors), min_sample)
    return {
        "nps": round(figure.score, 1) if figure.score is not None else None,
        "nps_ci95": [round(x, 1) for x in figure.ci95] if figure.ci95 is not None else None,
        "nps_hidden": figure.hidden,
        "nps_responses": figure.responses,
    }


def _figures(row: Any, min_sample: int) -> dict[str, Any]:
    revenue = Decimal(row.revenue).quantize(_CENTS)
    return {
        "members": row.members,
        "revenue": str(revenue),
        "buyers": row.buyers,
        "orders": int(row.orders),
        "repurchase_rate": _rate(row.repeat_buyers, row.buyers),
        "churn_rate": _rate(row.churned, row.before_buyers),
        "core_customer_retention_rate": _rate(row.core_retained, row.core_before),
        "average_ltv": _money(row.average_ltv),
        "average_spend_per_buyer": _money(revenue / row.buyers) if row.buyers else None,
        "average_annual_spend": _money(row.average_annual_spend),
        "active_rate": _rate(row.active, row.members),
        "monthly_active_rate": _rate(row.monthly_active, row.members),
        "participation_rate": _rate(row.participants, row.members),
        "high_value_revenue_share": round(float(row.high_value_revenue / revenue), 4)
        if revenue
        else None,
        **_nps(row, min_sample),
        "csat": round(float(row.csat_sum) / row.csat_n, 2) if row.csat_n else None,
        "satisfied_share": _rate(int(row.satisfied), int(row.csat_n)),
        "csat_responses": int(row.csat_n),
        "complaints": int(row.complaints),
        "complaint_rate": _rate(int(row.complaints), int(row.orders), 6),
        "sla_compliance": _rate(
            int(row.fr_met + row.res_met), int(row.fr_settled + row.res_settled)
        ),
        "first_contact_resolution_rate": _rate(int(row.fcr), int(row.resolved)),
        "follow_up_coverage": _rate(int(row.covered), int(row.resolved)),
    }


async def period_kpis(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    by: tuple[Dimension, ...] = (),
    nps_min_sample: int = DEFAULT_MIN_SAMPLE,
) -> tuple[dict[str, Any], dict[str, dict[str, tuple[str, dict[str, Any]]]]]:
    """The figures of one period, and per requested dimension {key: (label, figures)}."""
    params = {
        "from": start,
        "to": end,
        "before": start - (end - start),
        "year_ago": end - timedelta(days=365),
        "month_ago": end - timedelta(days=30),
    }
    overall: dict[str, Any] = {}
    groups: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {d: {} for d in by}
    # per member facts are sorted / hashed in memory (this request's transaction only)
    await session.execute(text("SET LOCAL work_mem = '64MB'"))
    for row in (await session.execute(text(_sql(by)), params)).all():
        if row.dim is None:
            overall = _figures(row, nps_min_sample)
        else:
            groups[row.dim][row.key] = (row.label, _figures(row, nps_min_sample))
    tiers: dict[str, int] = dict((await session.execute(text(_TIERS), {"to": end})).all())
    segments: dict[str, int] = dict((await session.execute(text(_SEGMENTS), {"to": end})).all())
    overall["tier_distribution"] = {k: int(v) for k, v in tiers.items()}
    overall["segment_sizes"] = {k: int(v) for k, v in segments.items()}
    return overall, groups


def _target(name: str, current: Any, previous: Any) -> dict[str, Any] | None:
    """The brief's target for ``name`` with the current figure against it (money: strings)."""
    spec = TARGETS.get(name)
    if spec is None:
        return None
    value: Decimal | None = Decimal(str(spec.value)) if spec.value is not None else None
    stretch: Decimal | None = Decimal(str(spec.stretch)) if spec.stretch is not None else None
    if spec.relative is not None:
        base = Decimal(str(previous)) if previous is not None else None
        value = base * (1 + Decimal(str(spec.relative[0]))) if base is not None else None
        stretch = base * (1 + Decimal(str(spec.relative[1]))) if base is not None else None
    met: bool | None = None
    if value is not None and current is not None:
        now = Decimal(str(current))
        met = {">=": now >= value, "<=": now <= value, ">": now > value}[spec.op]
    is_money = isinstance(current, str) or isinstance(previous, str)

    def shown(v: Decimal | None) -> Any:
        if v is None:
            return None
        return _money(v) if is_money else round(float(v), 4)

    return {
        "op": spec.op,
        "value": shown(value),
        "stretch": shown(stretch),
        "relative_to_previous": list(spec.relative) if spec.relative else None,
        "basis": spec.basis,
        "met": met,
    }


def _paired(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = list(current) + [k for k in previous if k not in current]
    return {
        k: {
            "current": current.get(k),
            "previous": previous.get(k),
            "target": _target(k, current.get(k), previous.get(k)),
        }
        for k in names
    }


async def kpis(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    by: tuple[Dimension, ...] = (),
    nps_min_sample: int = DEFAULT_MIN_SAMPLE,
) -> dict[str, Any]:
    current, current_groups = await period_kpis(session, start, end, by, nps_min_sample)
    prev_start = start - (end - start)
    previous, previous_groups = await period_kpis(session, prev_start, start, by, nps_min_sample)
    breakdowns: dict[str, list[dict[str, Any]]] = {}
    for d in by:
        now, before = current_groups[d], previous_groups[d]
        breakdowns[d] = [
            {
                "key": key,
                "label": (now.get(key) or before[key])[0],
                "kpis": _paired(
                    now[key][1] if key in now else {}, before[key][1] if key in before else {}
                ),
            }
            for key in sorted(set(now) | set(before))
        ]
    return {
        "period": {"from": start, "to": end},
        "previous_period": {"from": prev_start, "to": start},
        "definitions": DEFINITIONS,
        "breakdown_definitions": {d: BREAKDOWN_DEFINITIONS[d] for d in by},
        "kpis": _paired(current, previous),
        "breakdowns": breakdowns,
    }
