"""The recompute: every time-based score as of one instant, in set-based SQL.

Steps (one transaction; progress is reported on the job row from another):
1. ``rc_orders``: orders before as_of with refunds before as_of subtracted
   (members erased from the service are left out of the population);
2. ``rc_stats``: per member counts, spend, windows, median gap, signals;
3. ``rc_scores``: RFM, value tier, lifecycle, groups, loyalty index and type;
4. lifecycle changes go to the outbox; the scores are written to profiles;
5. CLV: BG/NBD + Gamma-Gamma fitted on the population (analytics.clv);
6. strategies from the matrix, then rule tags and segments over all profiles.
Exact definitions: docs/segmentation.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import column, text
from sqlalchemy.ext.asyncio import AsyncSession

from segmentation import events
from segmentation.analytics import clv
from segmentation.analytics.config import LOYALTY_INDICATORS, loyalty_weights
from segmentation.segments.service import refresh_all
from segmentation.settings import SegmentationSettings
from segmentation.strategies.service import apply_strategies

Progress = Callable[[float, str], Awaitable[None]]

_ORDERS = """
CREATE TEMP TABLE rc_orders ON COMMIT DROP AS
SELECT o.order_id, o.member_id, o.occurred_at, o.amount, o.coupon_used, o.discount_amount,
       o.amount - COALESCE(r.refunded, 0) AS net
FROM member_orders o
JOIN profiles p ON p.member_id = o.member_id
LEFT JOIN (
    SELECT order_id, sum(amount) AS refunded FROM order_refunds
    WHERE occurred_at < CAST(:as_of AS timestamptz) GROUP BY order_id
) r ON r.order_id = o.order_id
WHERE o.occurred_at < CAST(:as_of AS timestamptz)
"""

_STATS = """
CREATE TEMP TABLE rc_stats ON COMMIT DROP AS
WITH premium AS (
    SELECT COALESCE(percentile_cont(0.8) WITHIN GROUP (ORDER BY amount), 0) AS threshold
    FROM rc_orders
), gaps AS (
    SELECT member_id,
           extract(epoch FROM occurred_at - lag(occurred_at)
               OVER (PARTITION BY member_id ORDER BY occurred_at, order_id)) / 86400.0 AS gap
    FROM rc_orders
), med AS (
    SELECT member_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS median_gap
    FROM gaps WHERE gap IS NOT NULL GROUP BY member_id
), acts AS (
    SELECT member_id,
           count(*) FILTER (WHERE kind IN ('login', 'page_view', 'check_in')) AS visits,
           count(*) FILTER (WHERE kind IN ('review', 'share', 'referral')) AS social,
           count(*) FILTER (WHERE kind IN ('complaint', 'survey')) AS service,
           min(occurred_at) FILTER (WHERE kind = 'complaint') AS first_complaint
    FROM member_activities WHERE occurred_at < CAST(:as_of AS timestamptz) GROUP BY member_id
)
SELECT o.member_id,
       count(*) AS n_orders,
       min(o.occurred_at) AS first_at,
       max(o.occurred_at) AS last_at,
       sum(o.net) AS spend,
       COALESCE(sum(o.net) FILTER (WHERE o.occurred_at >= CAST(:year_ago AS timestamptz)), 0)
           AS spend_365,
       count(*) FILTER (WHERE o.occurred_at >= CAST(:year_ago AS timestamptz)) AS n_365,
       count(DISTINCT date_trunc('month', o.occurred_at AT TIME ZONE 'UTC'))
           FILTER (WHERE o.occurred_at >= CAST(:year_ago AS timestamptz)) AS months_365,
       count(*) FILTER (WHERE o.coupon_used OR o.discount_amount > 0) AS coupon_orders,
       count(*) FILTER (WHERE o.amount >= (SELECT threshold FROM premium) AND o.amount > 0)
           AS premium_orders,
       count(*) FILTER (WHERE o.occurred_at > a.first_complaint) AS orders_after_complaint,
       max(m.median_gap) AS median_gap,
       COALESCE(max(a.visits), 0) AS visits,
       COALESCE(max(a.social), 0) AS social,
       COALESCE(max(a.service), 0) AS service,
       max(a.first_complaint) AS first_complaint
FROM rc_orders o
LEFT JOIN med m ON m.member_id = o.member_id
LEFT JOIN acts a ON a.member_id = o.member_id
GROUP BY o.member_id
"""

# k = members whose value is <= this one's (SQL cume_dist's numerator, peers included),
# N = population size; ceil(5 * k / N) is computed in integers: no float rounding.
_SCORES = """
CREATE TEMP TABLE rc_scores ON COMMIT DROP AS
WITH ranked AS (
SELECT s.*,
       count(*) OVER () AS pop,
       count(*) OVER (ORDER BY last_at) AS k_r,
       count(*) OVER (ORDER BY n_orders) AS k_f,
       count(*) OVER (ORDER BY spend) AS k_m,
       count(*) OVER (ORDER BY spend_365) AS k_365,
       percent_rank() OVER (ORDER BY n_orders) AS pr_orders,
       percent_rank() OVER (ORDER BY visits) AS pr_visits,
       extract(epoch FROM CAST(:as_of AS timestamptz) - last_at) / 86400.0 AS days_since,
       GREATEST(COALESCE(median_gap, :default_gap), 1.0) AS rhythm,
       CAST(coupon_orders AS float8) / n_orders AS price_share,
       CAST(premium_orders AS float8) / n_orders AS quality_share,
       LEAST(1.0, CAST(service AS float8) / n_orders) AS service_share,
       LEAST(1.0, CAST(social AS float8) / n_orders) AS social_share,
       p.csat_sum / NULLIF(p.csat_count, 0) AS csat_avg,
       p.nps_last,
       p.manual_tags,
       p.lifecycle AS old_lifecycle
FROM rc_stats s JOIN profiles p ON p.member_id = s.member_id
), base AS (
    SELECT k.*,
           CAST((5 * k_r + pop - 1) / pop AS int) AS r,
           CAST((5 * k_f + pop - 1) / pop AS int) AS f,
           CAST((5 * k_m + pop - 1) / pop AS int) AS m,
           CASE
               WHEN 5 * k_365 > 4 * pop AND n_365 >= 5 THEN 'high'
               WHEN 5 * k_365 <= 2 * pop OR n_365 <= 1 THEN 'low'
               ELSE 'medium'
           END AS value_tier,
           CASE
               WHEN days_since / rhythm > :churned THEN 'churned'
               WHEN days_since / rhythm > :churn_risk THEN 'churn-risk'
               WHEN days_since / rhythm > :sleeping THEN 'sleeping'
               WHEN n_orders <= :new_max THEN 'new'
               WHEN n_orders < :mature_min THEN 'growing'
               ELSE 'mature'
           END AS lifecycle
    FROM ranked k
), named AS (
    SELECT b.*, (f + m + 1) / 2 AS fm FROM base b
), ind AS (
    SELECT n.*,
           CASE
               WHEN r = 5 AND fm >= 4 THEN 'Champions'
               WHEN r = 5 AND fm >= 2 THEN 'Potential loyalist'
               WHEN r = 5 THEN 'New'
               WHEN r = 4 AND fm >= 4 THEN 'Loyal'
               WHEN r = 4 AND fm >= 2 THEN 'Potential loyalist'
               WHEN r = 4 THEN 'Promising'
               WHEN r = 3 AND fm >= 4 THEN 'Loyal'
               WHEN r = 3 AND fm = 3 THEN 'Needs attention'
               WHEN r = 3 THEN 'About to sleep'
               WHEN fm = 5 THEN 'Can''t lose them'
               WHEN fm >= 3 THEN 'At risk'
               WHEN r = 1 AND fm = 1 THEN 'Lost'
               ELSE 'Hibernating'
           END AS rfm_segment,
           CAST(pr_orders AS float8) AS x_repeat_purchases,
           LEAST(1.0, months_365 / 12.0) AS x_purchase_share,
           CAST(pr_visits AS float8) AS x_brand_attention,
           CASE WHEN median_gap IS NULL THEN 0.0 ELSE 1.0 / (1.0 + median_gap / 30.0) END
               AS x_choice_time,
           1.0 - price_share AS x_price_insensitivity,
           GREATEST(0.0, 1.0 - days_since / (:churned * rhythm)) AS x_competitor_resistance,
           CASE WHEN first_complaint IS NULL THEN 0.5
                WHEN orders_after_complaint > 0 THEN 1.0 ELSE 0.0 END AS x_quality_tolerance
    FROM named n
)
SELECT i.*,
       CASE
           WHEN lifecycle IN ('churn-risk', 'churned') THEN 'churn-risk'
           WHEN value_tier = 'high' THEN 'high-value'
           WHEN value_tier = 'medium' OR (lifecycle IN ('new', 'growing') AND r >= 4)
               THEN 'potential'
           ELSE 'ordinary'
       END AS value_group,
       CASE
           WHEN GREATEST(price_share, quality_share, service_share, social_share) = 0
               THEN 'quality-seeking'
           WHEN price_share >= GREATEST(quality_share, service_share, social_share)
               THEN 'price-sensitive'
           WHEN quality_share >= GREATEST(service_share, social_share) THEN 'quality-seeking'
           WHEN service_share >= social_share THEN 'service-experience'
           ELSE 'social-interactive'
       END AS behaviour_group,
       100.0 * (:w1 * x_repeat_purchases + :w2 * x_purchase_share + :w3 * x_brand_attention
                + :w4 * x_choice_time + :w5 * x_price_insensitivity
                + :w6 * x_competitor_resistance + :w7 * x_quality_tolerance) AS loyalty_index,
       CASE
           WHEN manual_tags && ARRAY['staff', 'employee', 'family', 'relative'] THEN 'kinship'
           WHEN price_share >= 0.5 THEN 'benefit'
           WHEN n_orders >= 3 AND (csat_avg >= 4 OR nps_last >= 9) THEN 'trust'
           WHEN n_orders >= 3 AND (csat_avg <= 2.5 OR nps_last <= 6 OR orders_after_complaint > 0)
               THEN 'monopoly'
           WHEN n_orders >= 2 AND visits <= n_orders THEN 'inertia'
           ELSE 'latent'
       END AS loyalty_type
FROM ind i
"""

_REASONS = """
CASE loyalty_type
    WHEN 'kinship' THEN jsonb_build_array(
        'tagged by hand as staff or family (' || array_to_string(
            ARRAY(SELECT unnest(manual_tags) INTERSECT
                  SELECT unnest(ARRAY['staff', 'employee', 'family', 'relative'])), ', ') || ')')
    WHEN 'benefit' THEN jsonb_build_array(
        format('%s of %s orders (%s%%) used a coupon or discount, at least 50%%',
               coupon_orders, n_orders, round(CAST(100 * price_share AS numeric), 0)))
    WHEN 'trust' THEN jsonb_build_array(
        format('%s orders (at least 3)', n_orders),
        format('satisfied: CSAT %s, last NPS %s (CSAT >= 4 or NPS >= 9)',
               COALESCE(round(csat_avg, 2)::text, 'none'), COALESCE(nps_last::text, 'none')))
    WHEN 'monopoly' THEN jsonb_build_array(
        format('%s orders (at least 3) despite dissatisfaction', n_orders),
        format('CSAT %s, last NPS %s, %s orders after the first complaint',
               COALESCE(round(csat_avg, 2)::text, 'none'), COALESCE(nps_last::text, 'none'),
               orders_after_complaint))
    WHEN 'inertia' THEN jsonb_build_array(
        format('%s repeat orders with little engagement (%s visits, at most one per order)',
               n_orders, visits),
        format('coupon share %s%% below 50%%, no satisfaction signal of trust',
               round(CAST(100 * price_share AS numeric), 0)))
    ELSE jsonb_build_array(
        CASE WHEN n_orders <= 1 THEN 'a single order so far'
             ELSE format('%s orders but %s visits without purchase', n_orders, visits) END,
        'none of benefit, trust, monopoly, kinship or inertia applies')
END
"""

_LIFECYCLE_CHANGES = """
SELECT member_id, jsonb_build_object(
    'member_id', member_id, 'from', old_lifecycle, 'to', lifecycle,
    'as_of', to_jsonb(CAST(:as_of AS timestamptz)),
    'days_since_last_order', round(CAST(days_since AS numeric), 1),
    'median_gap_days', round(CAST(median_gap AS numeric), 1)) AS data
FROM rc_scores WHERE old_lifecycle IS DISTINCT FROM lifecycle
"""

_WRITE = f"""
UPDATE profiles p SET
    scores_as_of = CAST(:as_of AS timestamptz),
    rfm_r = s.r, rfm_f = s.f, rfm_m = s.m, rfm_segment = s.rfm_segment,
    value_tier = s.value_tier, lifecycle = s.lifecycle,
    median_gap_days = s.median_gap,
    value_group = s.value_group, behaviour_group = s.behaviour_group,
    loyalty_index = round(CAST(s.loyalty_index AS numeric), 2),
    loyalty_indicators = jsonb_build_object(
        {", ".join(f"'{n}', round(CAST(s.x_{n} AS numeric), 4)" for n in LOYALTY_INDICATORS)}),
    loyalty_type = s.loyalty_type,
    loyalty_reasons = s.reasons
FROM (SELECT *, {_REASONS} AS reasons FROM rc_scores) s WHERE p.member_id = s.member_id
"""

_CLEAR_OUTSIDE = """
UPDATE profiles p SET
    scores_as_of = CAST(:as_of AS timestamptz),
    rfm_r = NULL, rfm_f = NULL, rfm_m = NULL, rfm_segment = NULL,
    value_tier = NULL, lifecycle = NULL, median_gap_days = NULL, value_group = NULL,
    behaviour_group = NULL, loyalty_index = NULL, loyalty_indicators = NULL,
    loyalty_type = NULL, loyalty_reasons = NULL,
    p_alive = NULL, expected_purchases_90d = NULL, expected_value = NULL
WHERE NOT EXISTS (SELECT 1 FROM rc_scores s WHERE s.member_id = p.member_id)
"""


async def recompute(
    session: AsyncSession,
    settings: SegmentationSettings,
    as_of: datetime,
    progress: Progress,
) -> dict[str, Any]:
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('segmentation-recompute'))"))
    _, weights = await loyalty_weights(session)
    params: dict[str, Any] = {
        "as_of": as_of,
        "default_gap": settings.lifecycle_default_gap_days,
        "sleeping": settings.lifecycle_sleeping_ratio,
        "churn_risk": settings.lifecycle_churn_risk_ratio,
        "churned": settings.lifecycle_churned_ratio,
        "new_max": settings.lifecycle_new_max_orders,
        "mature_min": settings.lifecycle_mature_min_orders,
    }
    params.update({f"w{i + 1}": w for i, w in enumerate(weights.weights)})
    await progress(0.05, "orders")
    await session.execute(text(_ORDERS), {"as_of": as_of})
    await progress(0.15, "member statistics")
    await session.execute(text(_STATS), {"as_of": as_of, "year_ago": as_of - timedelta(days=365)})
    await session.execute(text("ANALYZE rc_stats"))
    await progress(0.3, "ranks")
    await session.execute(text(_SCORES), params)
    await session.execute(text("ANALYZE rc_scores"))
    await progress(0.4, "lifecycle events")
    changes = await events.publish_from_select(
        session,
        events.LIFECYCLE_CHANGED,
        text(_LIFECYCLE_CHANGES)
        .bindparams(as_of=as_of)
        .columns(column("member_id"), column("data")),
    )
    await progress(0.45, "writing scores")
    written = (await session.execute(text(_WRITE), params)).rowcount  # type: ignore[attr-defined]
    await session.execute(text(_CLEAR_OUTSIDE), {"as_of": as_of})
    await progress(0.6, "clv fit")
    model = await clv.fit_and_score(session, as_of)
    await progress(0.8, "strategies")
    await apply_strategies(session)
    await progress(0.9, "tags and segments")
    segments = await refresh_all(session, "recompute")
    return {
        "as_of": as_of.isoformat(),
        "population": int(written or 0),
        "lifecycle_changes": changes,
        "clv_model_id": model,
        "segments": segments,
    }
