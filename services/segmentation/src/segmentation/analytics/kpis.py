"""Ops KPIs over a period [from, to) with the previous period of the same length beside them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

DEFINITIONS = {
    "revenue": "order amounts minus refunds, orders placed in the period",
    "buyers": "members with at least one order in the period",
    "repurchase_rate": "buyers with 2+ orders in the period / buyers",
    "churn_rate": "members who ordered in the period of the same length before 'from' and "
    "not in the period / those members",
    "average_ltv": "mean net spend per customer of all orders before 'to'",
    "average_spend_per_buyer": "revenue / buyers",
    "active_rate": "members with an order or an interaction in the period / members enrolled "
    "before 'to'",
    "participation_rate": "members who took part in the programme in the period (redemption, "
    "check-in, review, share, referral, activity, survey) / members enrolled before 'to'",
    "high_value_revenue_share": "revenue from members whose value tier is high (last "
    "recompute) / revenue",
    "tier_distribution": "members per tier as of 'to' (tier history)",
    "segment_sizes": "members per segment as of 'to' (segment history)",
}

_SQL = """
WITH net AS (
    SELECT o.order_id, o.member_id, o.occurred_at,
           o.amount - COALESCE((SELECT sum(r.amount) FROM order_refunds r
                                WHERE r.order_id = o.order_id AND r.occurred_at < :to), 0) AS net
    FROM member_orders o WHERE o.occurred_at < :to
), period AS (
    SELECT * FROM net WHERE occurred_at >= :from
), buyers AS (
    SELECT member_id, count(*) AS n, sum(net) AS spend FROM period GROUP BY member_id
), before AS (
    SELECT DISTINCT member_id FROM net WHERE occurred_at >= :before AND occurred_at < :from
), members AS (
    SELECT member_id FROM profiles WHERE COALESCE(enrolled_at, first_order_at) < :to
), acts AS (
    SELECT member_id, kind FROM member_activities WHERE occurred_at >= :from AND occurred_at < :to
)
SELECT
    (SELECT COALESCE(sum(net), 0) FROM period) AS revenue,
    (SELECT count(*) FROM buyers) AS buyers,
    (SELECT count(*) FILTER (WHERE n >= 2) FROM buyers) AS repeat_buyers,
    (SELECT count(*) FROM before) AS before_buyers,
    (SELECT count(*) FROM before b WHERE NOT EXISTS
        (SELECT 1 FROM buyers x WHERE x.member_id = b.member_id)) AS churned,
    (SELECT avg(s) FROM (SELECT sum(net) AS s FROM net GROUP BY member_id) t) AS average_ltv,
    (SELECT count(*) FROM members) AS members,
    (SELECT count(*) FROM members m
        WHERE EXISTS (SELECT 1 FROM buyers b WHERE b.member_id = m.member_id)
           OR EXISTS (SELECT 1 FROM acts a WHERE a.member_id = m.member_id)) AS active,
    (SELECT count(*) FROM members m
        WHERE EXISTS (SELECT 1 FROM acts a WHERE a.member_id = m.member_id
            AND a.kind IN ('redemption', 'check_in', 'checkin', 'review', 'share', 'referral',
                           'activity', 'survey'))) AS participants,
    (SELECT COALESCE(sum(b.spend), 0) FROM buyers b JOIN profiles p USING (member_id)
        WHERE p.value_tier = 'high') AS high_value_revenue
"""

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


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


async def period_kpis(session: AsyncSession, start: datetime, end: datetime) -> dict[str, Any]:
    params = {"from": start, "to": end, "before": start - (end - start)}
    row = (await session.execute(text(_SQL), params)).one()
    tiers: dict[str, int] = dict((await session.execute(text(_TIERS), {"to": end})).all())
    segments: dict[str, int] = dict((await session.execute(text(_SEGMENTS), {"to": end})).all())
    cents = Decimal("0.01")
    revenue = Decimal(row.revenue).quantize(cents)
    return {
        "revenue": str(revenue),
        "buyers": row.buyers,
        "repurchase_rate": _rate(row.repeat_buyers, row.buyers),
        "churn_rate": _rate(row.churned, row.before_buyers),
        "average_ltv": str(Decimal(row.average_ltv).quantize(cents))
        if row.average_ltv is not None
        else None,
        "average_spend_per_buyer": str((revenue / row.buyers).quantize(cents))
        if row.buyers
        else None,
        "active_rate": _rate(row.active, row.members),
        "participation_rate": _rate(row.participants, row.members),
        "high_value_revenue_share": round(float(row.high_value_revenue / revenue), 4)
        if revenue
        else None,
        "tier_distribution": {k: int(v) for k, v in tiers.items()},
        "segment_sizes": {k: int(v) for k, v in segments.items()},
    }


async def kpis(session: AsyncSession, start: datetime, end: datetime) -> dict[str, Any]:
    current = await period_kpis(session, start, end)
    prev_start = start - (end - start)
    previous = await period_kpis(session, prev_start, start)
    return {
        "period": {"from": start, "to": end},
        "previous_period": {"from": prev_start, "to": start},
        "definitions": DEFINITIONS,
        "kpis": {k: {"current": current[k], "previous": previous[k]} for k in current},
    }
