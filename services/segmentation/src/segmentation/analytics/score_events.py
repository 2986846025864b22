"""The recompute's score changes as events: value tier, lifecycle stage and churn-risk level.

Before the recompute writes a score, ``snapshot`` keeps every profile's three values
(``rc_before``, under the recompute's profiles lock, so nothing else changes them
meanwhile); once every score is written (CLV included), ``publish_changes`` writes one event
per member and kind whose value changed, set-based, to the outbox in the recompute's
transaction (``segmentation.events.publish_rows``: the payloads have exactly the contract
models' fields). A first recompute publishes every member's first value (from null).

The churn-risk level is 1 - p_alive banded by ``churn_risk_high`` / ``churn_risk_medium``
(settings); no fit, no level.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import column, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.contracts.segmentation import (
    ChurnRiskChangedV1,
    LifecycleChangedV1,
    SegmentationEvent,
    ValueTierChangedV1,
)
from segmentation import events
from segmentation.settings import SegmentationSettings

_LEVEL = """CASE WHEN {p} IS NULL THEN NULL
     WHEN 1 - {p} >= CAST(:high AS float8) THEN 'high'
     WHEN 1 - {p} >= CAST(:medium AS float8) THEN 'medium'
     ELSE 'low' END"""

_SNAPSHOT = f"""
CREATE TEMP TABLE rc_before ON COMMIT DROP AS
SELECT member_id, value_tier, lifecycle, {_LEVEL.format(p="p_alive")} AS churn_risk
FROM profiles
"""

# Every member with at least one of the three changes, once: the three statements below
# read these narrow rows instead of each joining the rewritten profiles (a million rows,
# with their old versions) to rc_before and rc_stats again. rc_stats (the recompute's
# population) gives the facts behind a value tier and a stage; a member outside it has
# no order before as_of.
_CHANGED = f"""
CREATE TEMP TABLE rc_changes ON COMMIT DROP AS
SELECT p.member_id, p.value_tier, p.lifecycle, p.p_alive,
       b.value_tier AS before_value_tier, b.lifecycle AS before_lifecycle,
       b.churn_risk AS before_churn_risk,
       s.spend_365, s.n_365, s.last_at, s.median_gap
FROM profiles p
LEFT JOIN rc_before b ON b.member_id = p.member_id
LEFT JOIN rc_stats s ON s.member_id = p.member_id
WHERE p.value_tier IS DISTINCT FROM b.value_tier
   OR p.lifecycle IS DISTINCT FROM b.lifecycle
   OR {_LEVEL.format(p="p.p_alive")} IS DISTINCT FROM b.churn_risk
"""

_CHANGES: dict[type[SegmentationEvent], str] = {
    ValueTierChangedV1: """
SELECT member_id, before_value_tier AS from_value_tier, value_tier AS to_value_tier,
       CAST(:as_of AS timestamptz) AS as_of,
       CAST(COALESCE(spend_365, 0) AS text) AS annual_spend,
       COALESCE(n_365, 0) AS annual_orders
FROM rc_changes
WHERE value_tier IS DISTINCT FROM before_value_tier
""",
    LifecycleChangedV1: """
SELECT member_id, before_lifecycle AS from_stage, lifecycle AS to_stage,
       CAST(:as_of AS timestamptz) AS as_of,
       round(CAST(date_part('epoch', CAST(:as_of AS timestamptz) - last_at) / 86400.0
                  AS numeric), 1) AS days_since_last_order,
       round(CAST(median_gap AS numeric), 1) AS median_gap_days
FROM rc_changes
WHERE lifecycle IS DISTINCT FROM before_lifecycle
""",
    ChurnRiskChangedV1: f"""
SELECT member_id, from_churn_risk, to_churn_risk, churn_risk, as_of FROM (
    SELECT member_id, before_churn_risk AS from_churn_risk,
           {_LEVEL.format(p="p_alive")} AS to_churn_risk,
           round(CAST(1 - p_alive AS numeric), 6) AS churn_risk,
           CAST(:as_of AS timestamptz) AS as_of
    FROM rc_changes
) c
WHERE to_churn_risk IS DISTINCT FROM from_churn_risk
""",
}


def _bands(settings: SegmentationSettings) -> dict[str, float]:
    return {"high": settings.churn_risk_high, "medium": settings.churn_risk_medium}


async def snapshot(session: AsyncSession, settings: SegmentationSettings) -> None:
    """Every profile's value tier, stage and churn-risk level before the recompute."""
    await session.execute(text(_SNAPSHOT), _bands(settings))


async def publish_changes(
    session: AsyncSession, settings: SegmentationSettings, as_of: datetime
) -> dict[str, int]:
    """One event per member and score whose value differs from the snapshot; the counts."""
    counts: dict[str, int] = {}
    await session.execute(text(_CHANGED), _bands(settings))
    for model, sql in _CHANGES.items():
        params = {"as_of": as_of, **(_bands(settings) if model is ChurnRiskChangedV1 else {})}
        rows = text(sql).bindparams(**params).columns(*(column(f) for f in model.fields()))
        counts[model.TYPE] = await events.publish_rows(session, model, rows)
    return counts


CHANGE_EVENTS: tuple[type[SegmentationEvent], ...] = tuple(_CHANGES)
