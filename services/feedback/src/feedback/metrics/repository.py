"""The metrics' queries: one period's survey answers and complaints, counted in SQL
(``service`` turns the counts into scores, rates and the Pareto of causes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_NPS_BY_TIER = text(
    "SELECT m.tier, "
    "count(*) FILTER (WHERE a.value >= 9), "
    "count(*) FILTER (WHERE a.value BETWEEN 7 AND 8), "
    "count(*) FILTER (WHERE a.value <= 6) "
    "FROM survey_answers a JOIN survey_responses r ON r.id = a.response_id "
    "LEFT JOIN member_projection m ON m.member_id = r.member_id "
    "WHERE a.metric = 'nps' AND a.value IS NOT NULL "
    "AND a.submitted_at >= :s AND a.submitted_at < :e GROUP BY m.tier ORDER BY m.tier"
)
_CSAT = text(
    "SELECT count(*), coalesce(sum(value), 0), count(*) FILTER (WHERE value >= 4) "
    "FROM survey_answers WHERE metric = 'csat' AND value IS NOT NULL "
    "AND submitted_at >= :s AND submitted_at < :e"
)
_CSI_ANSWERS = text(
    "SELECT factor, value, count(*) FROM survey_answers "
    "WHERE factor IS NOT NULL AND value IS NOT NULL "
    "AND submitted_at >= :s AND submitted_at < :e GROUP BY factor, value"
)
# one period's complaints (created in it) with their SLA clocks settled and met
_OPENED_AND_SLA = text(
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
)
_MEAN_FIRST_RESPONSE = text(
    "SELECT avg(extract(epoch FROM first_responded_at - created_at)) / 60 "
    "FROM complaints WHERE first_responded_at >= :s AND first_responded_at < :e"
)
# first resolved in the period: how many, at first contact, how fast, with a follow-up done
_RESOLVED = text(
    "SELECT count(*), "
    " count(*) FILTER (WHERE escalated_at IS NULL AND NOT handed_over "
    "                  AND reopen_count = 0), "
    " avg(extract(epoch FROM first_resolved_at - created_at)) / 60, "
    " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM follow_ups f "
    "   WHERE f.complaint_id = c.id AND f.reason = 'post_resolution' "
    "   AND f.status = 'completed')) "
    "FROM complaints c WHERE first_resolved_at >= :s AND first_resolved_at < :e"
)
_CAUSES = text(
    "SELECT coalesce(cause, category) AS k, count(*) AS n FROM complaints "
    "WHERE created_at >= :s AND created_at < :e GROUP BY k ORDER BY n DESC, k"
)
_ORDERS = text("SELECT count(*) FROM order_facts WHERE occurred_at >= :s AND occurred_at < :e")
_RECTIFIED = text(
    "SELECT count(*), count(*) FILTER (WHERE rectified) FROM follow_ups "
    "WHERE status = 'completed' AND rectified IS NOT NULL "
    "AND completed_at >= :s AND completed_at < :e"
)


async def nps_by_tier(
    session: AsyncSession, start: datetime, end: datetime
) -> list[tuple[str | None, int, int, int]]:
    """(tier, promoters, passives, detractors) per tier of the members who answered."""
    rows = await session.execute(_NPS_BY_TIER, {"s": start, "e": end})
    return [(tier, p, pa, d) for tier, p, pa, d in rows]


async def csat_totals(
    session: AsyncSession, start: datetime, end: datetime
) -> tuple[int, int, int]:
    """(answers, sum of values, answers of 4 or 5)."""
    n, total, satisfied = (await session.execute(_CSAT, {"s": start, "e": end})).one()
    return n, total, satisfied


async def csi_answers(
    session: AsyncSession, start: datetime, end: datetime
) -> list[tuple[str, int, int]]:
    """(factor, value, count) of the answers that rate a CSI factor."""
    rows = await session.execute(_CSI_ANSWERS, {"s": start, "e": end})
    return [(factor, value, count) for factor, value, count in rows]


@dataclass(frozen=True)
class ComplaintFacts:
    """One period's complaint counts (each row's dates in the period, end excluded)."""

    opened: int
    first_response_settled: int  # answered or breached
    first_response_met: int
    resolution_settled: int
    resolution_met: int
    mean_first_response: Any  # minutes (a Decimal), None without any
    resolved: int  # first resolved in the period
    first_contact: int
    mean_resolution: Any
    followed_up: int  # resolved with the post-resolution follow-up completed
    causes: list[tuple[str, int]]  # by count, most first
    orders: int
    completed: int  # follow-ups completed with a rectified answer
    rectified: int


async def complaint_facts(session: AsyncSession, start: datetime, end: datetime) -> ComplaintFacts:
    params = {"s": start, "e": end}
    run = session.execute
    opened, fr_settled, fr_met, res_settled, res_met = (await run(_OPENED_AND_SLA, params)).one()
    resolved, fcr, mean_resolution, covered = (await run(_RESOLVED, params)).one()
    completed, rectified = (await run(_RECTIFIED, params)).one()
    return ComplaintFacts(
        opened=opened,
        first_response_settled=fr_settled,
        first_response_met=fr_met,
        resolution_settled=res_settled,
        resolution_met=res_met,
        mean_first_response=(await run(_MEAN_FIRST_RESPONSE, params)).scalar_one(),
        resolved=resolved,
        first_contact=fcr,
        mean_resolution=mean_resolution,
        followed_up=covered,
        causes=[(cause, count) for cause, count in await run(_CAUSES, params)],
        orders=(await run(_ORDERS, params)).scalar_one(),
        completed=completed,
        rectified=rectified,
    )
