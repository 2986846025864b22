"""The recompute: every time-based score as of one instant, in set-based SQL.

Steps (one transaction; progress is reported on the job row from another):
1. ``rc_stats``: per member counts, spend (refunds before as_of subtracted),
   windows, median gap, signals and CLV's summary inputs (purchase days), in one pass
   over the orders before as_of (members erased from the service are left out of the
   population);
2. ``rc_ranks``: the ranks, from narrow rows;
3. CLV: BG/NBD + Gamma-Gamma fitted on the population (its summary read from
   ``rc_stats``, analytics.clv), every member's predictions in ``rc_clv``;
4. the scores (RFM, value tier, lifecycle, groups, loyalty index and type) are
   computed and written to the profiles with the CLV predictions in one statement;
5. the changes of value tier, lifecycle stage and churn-risk level since before step 3
   go to the outbox as events (``score_events``);
6. strategies from the matrix (already written with the scores in step 4: this finds
   nothing left to change unless the matrix misses a combination), then rule tags and
   segments over all profiles.
Exact definitions: docs/segmentation.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from segmentation import events
from segmentation.analytics import clv, score_events
from segmentation.analytics.config import LOYALTY_INDICATORS, loyalty_weights
from segmentation.profiles.service import lock_profiles_for_bulk_write
from segmentation.segments.batch import refresh_all
from segmentation.settings import SegmentationSettings
from segmentation.strategies.service import apply_strategies, strategy_matrix

Progress = Callable[[float, str], Awaitable[None]]

# Refunds before as_of, per order (subtracted from the order's amount).
_REFUNDED = """
SELECT order_id, sum(amount) AS refunded FROM order_refunds
WHERE occurred_at < CAST(:as_of AS timestamptz) GROUP BY order_id
"""

# One pass over the orders in (member_id, occurred_at) order, the order of the index
# ix_member_orders_member_time, so that neither the gaps (lag) nor the per-member
# aggregate needs a sort of the orders. Members without a profile (erased: their
# orders are kept under a pseudonym) are not in the population.
_STATS = f"""
CREATE TEMP TABLE rc_stats ON COMMIT DROP AS
WITH amounts AS (
    SELECT o.amount, count(*) AS n
    FROM member_orders o
    WHERE o.occurred_at < CAST(:as_of AS timestamptz)
      AND EXISTS (SELECT 1 FROM profiles p WHERE p.member_id = o.member_id)
    GROUP BY o.amount
), cumulative AS (
    SELECT amount, sum(n) OVER (ORDER BY amount) AS upto FROM amounts
), position AS (
    SELECT CAST(0.8 AS float8) * (max(upto) - 1) AS pos FROM cumulative
), premium AS (
    -- percentile_cont(0.8) of the order amounts, as SQL computes it (float8 linear
    -- interpolation between the values at rows floor(pos) and ceil(pos), 0-based),
    -- from the histogram of amounts instead of a sort of every order
    SELECT COALESCE(CAST(
        CAST(lo.amount AS float8)
        + (CAST(hi.amount AS float8) - CAST(lo.amount AS float8)) * (x.pos - floor(x.pos))
        AS numeric), 0) AS threshold
    FROM position x
    LEFT JOIN LATERAL (
        SELECT amount FROM cumulative WHERE upto > floor(x.pos) ORDER BY amount LIMIT 1
    ) lo ON true
    LEFT JOIN LATERAL (
        SELECT amount FROM cumulative WHERE upto > ceil(x.pos) ORDER BY amount LIMIT 1
    ) hi ON true
), orders AS (
    SELECT o.member_id, o.occurred_at, o.amount,
           o.amount - COALESCE(r.refunded, 0) AS net,
           o.coupon_used OR o.discount_amount > 0 AS coupon,
           date_part('epoch', o.occurred_at - lag(o.occurred_at) OVER w) / 86400.0 AS gap,
           date_trunc('month', lag(o.occurred_at) OVER w AT TIME ZONE 'UTC')
               IS DISTINCT FROM date_trunc('month', o.occurred_at AT TIME ZONE 'UTC')
               OR lag(o.occurred_at) OVER w < CAST(:year_ago AS timestamptz) AS new_month,
           CAST(o.occurred_at AT TIME ZONE 'UTC' AS date) AS day,
           CAST(lag(o.occurred_at) OVER w AT TIME ZONE 'UTC' AS date)
               IS DISTINCT FROM CAST(o.occurred_at AT TIME ZONE 'UTC' AS date) AS new_day,
           CAST(first_value(o.occurred_at) OVER w AT TIME ZONE 'UTC' AS date) AS first_day
    FROM member_orders o
    LEFT JOIN ({_REFUNDED}) r ON r.order_id = o.order_id
    WHERE o.occurred_at < CAST(:as_of AS timestamptz)
      AND EXISTS (SELECT 1 FROM profiles p WHERE p.member_id = o.member_id)
    WINDOW w AS (PARTITION BY o.member_id ORDER BY o.occurred_at)
), per_member AS (
    SELECT member_id,
           count(*) AS n_orders,
           min(occurred_at) AS first_at,
           max(occurred_at) AS last_at,
           sum(net) AS spend,
           COALESCE(sum(net) FILTER (WHERE occurred_at >= CAST(:year_ago AS timestamptz)), 0)
               AS spend_365,
           count(*) FILTER (WHERE occurred_at >= CAST(:year_ago AS timestamptz)) AS n_365,
           -- orders come in time order: a month in the window starts where the month
           -- differs from the previous order's (or that one is before the window)
           count(*) FILTER (WHERE occurred_at >= CAST(:year_ago AS timestamptz) AND new_month)
               AS months_365,
           count(*) FILTER (WHERE coupon) AS coupon_orders,
           count(*) FILTER (WHERE amount >= (SELECT threshold FROM premium) AND amount > 0)
               AS premium_orders,
           -- the gaps' median; only members with a gap start its per-member sort
           percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FILTER (WHERE gap IS NOT NULL)
               AS median_gap,
           -- CLV's summary (analytics.clv): purchase days (UTC), each counted at its
           -- first order; the repeat days' spend and count give the mean spend per day
           count(*) FILTER (WHERE new_day) - 1 AS clv_frequency,
           CAST(max(occurred_at) AT TIME ZONE 'UTC' AS date)
               - CAST(min(occurred_at) AT TIME ZONE 'UTC' AS date) AS clv_recency,
           CAST(min(occurred_at) AT TIME ZONE 'UTC' AS date) AS clv_first_day,
           sum(net) FILTER (WHERE day > first_day) AS clv_repeat_spend,
           count(*) FILTER (WHERE new_day AND day > first_day) AS clv_repeat_days
    FROM orders GROUP BY member_id
), acts AS (
    SELECT member_id,
           count(*) FILTER (WHERE kind IN ('login', 'page_view', 'check_in')) AS visits,
           count(*) FILTER (WHERE kind IN ('review', 'share', 'referral')) AS social,
           count(*) FILTER (WHERE kind IN ('complaint', 'survey')) AS service,
           min(occurred_at) FILTER (WHERE kind = 'complaint') AS first_complaint
    FROM member_activities WHERE occurred_at < CAST(:as_of AS timestamptz) GROUP BY member_id
), after_complaint AS (
    SELECT o.member_id, count(*) AS n
    FROM member_orders o JOIN acts a ON a.member_id = o.member_id
    WHERE o.occurred_at > a.first_complaint AND o.occurred_at < CAST(:as_of AS timestamptz)
    GROUP BY o.member_id
)
SELECT m.*,
       COALESCE(c.n, 0) AS orders_after_complaint,
       COALESCE(a.visits, 0) AS visits,
       COALESCE(a.social, 0) AS social,
       COALESCE(a.service, 0) AS service,
       a.first_complaint
FROM per_member m
LEFT JOIN acts a ON a.member_id = m.member_id
LEFT JOIN after_complaint c ON c.member_id = m.member_id
"""

# Only what the ranks need, sorted five times: narrow rows sort fast.
# k = members whose value is <= this one's (SQL cume_dist's numerator, peers included);
# rank() - 1 = members whose value is < this one's (percent_rank's numerator).
_RANKS = """
CREATE TEMP TABLE rc_ranks ON COMMIT DROP AS
SELECT member_id,
       count(*) OVER (ORDER BY last_at) AS k_r,
       count(*) OVER (ORDER BY n_orders) AS k_f,
       rank() OVER (ORDER BY n_orders) AS rank_orders,
       count(*) OVER (ORDER BY spend) AS k_m,
       count(*) OVER (ORDER BY spend_365) AS k_365,
       rank() OVER (ORDER BY visits) AS rank_visits
FROM rc_stats
"""

# k = members whose value is <= this one's (SQL cume_dist's numerator, peers included),
# N = population size; ceil(5 * k / N) is computed in integers: no float rounding.
_SCORES = """
WITH ranked AS (
SELECT s.*, k.k_r, k.k_f, k.k_m, k.k_365,
       CAST(:pop AS bigint) AS pop,
       CASE WHEN :pop > 1 THEN CAST(k.rank_orders - 1 AS float8) / (:pop - 1) ELSE 0 END
           AS pr_orders,
       CASE WHEN :pop > 1 THEN CAST(k.rank_visits - 1 AS float8) / (:pop - 1) ELSE 0 END
           AS pr_visits,
       date_part('epoch', CAST(:as_of AS timestamptz) - last_at) / 86400.0 AS days_since,
       GREATEST(COALESCE(median_gap, :default_gap), 1.0) AS rhythm,
       CAST(coupon_orders AS float8) / n_orders AS price_share,
       CAST(premium_orders AS float8) / n_orders AS quality_share,
       LEAST(1.0, CAST(service AS float8) / n_orders) AS service_share,
       LEAST(1.0, CAST(social AS float8) / n_orders) AS social_share,
       p.csat_sum / NULLIF(p.csat_count, 0) AS csat_avg,
       p.nps_last,
       p.manual_tags,
       c.p_alive AS clv_p_alive, c.expected_purchases AS clv_expected_purchases,
       c.expected_value AS clv_expected_value
FROM rc_stats s
JOIN rc_ranks k ON k.member_id = s.member_id
JOIN profiles p ON p.member_id = s.member_id
LEFT JOIN rc_clv c ON c.member_id = s.member_id
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
           LEAST(1.0, CAST(months_365 AS float8) / 12.0) AS x_purchase_share,
           CAST(pr_visits AS float8) AS x_brand_attention,
           CASE WHEN median_gap IS NULL THEN CAST(0 AS float8)
                ELSE 1.0 / (1.0 + median_gap / 30.0) END AS x_choice_time,
           1.0 - price_share AS x_price_insensitivity,
           GREATEST(CAST(0 AS float8), 1.0 - days_since / (:churned * rhythm))
               AS x_competitor_resistance,
           CAST(CASE WHEN first_complaint IS NULL THEN 0.5
                     WHEN orders_after_complaint > 0 THEN 1.0 ELSE 0.0 END AS float8)
               AS x_quality_tolerance
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
               coupon_orders, n_orders, (200 * coupon_orders + n_orders) / (2 * n_orders)))
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
               (200 * coupon_orders + n_orders) / (2 * n_orders)))
    ELSE jsonb_build_array(
        CASE WHEN n_orders <= 1 THEN 'a single order so far'
             ELSE format('%s orders but %s visits without purchase', n_orders, visits) END,
        'none of benefit, trust, monopoly, kinship or inertia applies')
END
"""

# The scores are computed and written in one statement (no table of them in between),
# the CLV predictions (rc_clv) and the strategies (rc_strategies: the matrix for every
# combination) with them: each profile is rewritten once.
_WRITE = f"""
UPDATE profiles p SET
    scores_as_of = CAST(:as_of AS timestamptz),
    rfm_r = s.r, rfm_f = s.f, rfm_m = s.m, rfm_segment = s.rfm_segment,
    value_tier = s.value_tier, lifecycle = s.lifecycle,
    median_gap_days = s.median_gap,
    value_group = s.value_group, behaviour_group = s.behaviour_group,
    loyalty_index = floor(s.loyalty_index * 100 + 0.5) / 100,
    loyalty_indicators = jsonb_build_object(
        {", ".join(f"'{n}', floor(s.x_{n} * 10000 + 0.5) / 10000" for n in LOYALTY_INDICATORS)}),
    loyalty_type = s.loyalty_type,
    loyalty_reasons = s.reasons,
    p_alive = s.clv_p_alive, expected_purchases_90d = s.clv_expected_purchases,
    expected_value = s.clv_expected_value,
    strategies = COALESCE(m.strategies, p.strategies)
FROM (SELECT *, {_REASONS} AS reasons FROM ({_SCORES}) scores) s
LEFT JOIN rc_strategies m ON m.value_group = s.value_group
    AND m.behaviour_group = s.behaviour_group AND m.lifecycle = s.lifecycle
WHERE p.member_id = s.member_id
"""

# Outside the population (no order before as_of): no RFM, stage, rhythm, loyalty or CLV,
# but a value tier as for everyone (coverage 100%): low (n = 0 <= 1), so value group ordinary.
_CLEAR_OUTSIDE = """
UPDATE profiles p SET
    scores_as_of = CAST(:as_of AS timestamptz),
    rfm_r = NULL, rfm_f = NULL, rfm_m = NULL, rfm_segment = NULL,
    value_tier = 'low', lifecycle = NULL, median_gap_days = NULL, value_group = 'ordinary',
    behaviour_group = NULL, loyalty_index = NULL, loyalty_indicators = NULL,
    loyalty_type = NULL, loyalty_reasons = NULL,
    p_alive = NULL, expected_purchases_90d = NULL, expected_value = NULL,
    strategies = COALESCE((SELECT m.strategies FROM rc_strategies m
                           WHERE m.value_group = 'ordinary' AND m.behaviour_group IS NULL
                             AND m.lifecycle IS NULL), p.strategies)
WHERE NOT EXISTS (SELECT 1 FROM rc_stats s WHERE s.member_id = p.member_id)
"""


# The recompute's sorts and hashes (a few narrow sorts of the population, hash joins of
# it with profiles) fit in memory with this, instead of spilling to temp files; set for
# the recompute's transaction only.
WORK_MEM = "256MB"


async def _analyze(session: AsyncSession, *tables: str) -> None:
    """Statistics for the recompute's temporary tables, which autovacuum never analyzes.

    Without them the planner took the million-row rc_ranks for a small table and sorted
    both sides of the scores' joins by member_id (text sorts, compared by the collation)
    to merge-join them, and the rows by their groups (three text keys) for the join to
    rc_strategies; analyzed (a sample: under a second for a million rows), every join of
    the scores statement is a hash join.
    """
    await session.execute(text(f"ANALYZE {', '.join(tables)}"))


async def recompute(
    session: AsyncSession,
    settings: SegmentationSettings,
    as_of: datetime,
    progress: Progress,
) -> dict[str, Any]:
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('segmentation-recompute'))"))
    await session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
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
    await progress(0.05, "member statistics")
    await session.execute(text(_STATS), {"as_of": as_of, "year_ago": as_of - timedelta(days=365)})
    await progress(0.2, "ranks")
    await session.execute(text(_RANKS))
    await _analyze(session, "rc_stats", "rc_ranks")
    params["pop"] = (await session.execute(text("SELECT count(*) FROM rc_stats"))).scalar_one()
    await progress(0.3, "clv summary")
    model = await clv.fit_and_predict(session, as_of, progress)
    await progress(0.5, "writing scores")
    # every later step writes profiles: no consumer writes one from here to the commit
    await lock_profiles_for_bulk_write(session)
    await score_events.snapshot(session, settings)
    await strategy_matrix(session, "rc_strategies")
    await _analyze(session, "rc_clv", "rc_strategies")
    await session.execute(text(_WRITE), params)
    await session.execute(text(_CLEAR_OUTSIDE), {"as_of": as_of})
    await progress(0.7, "score change events")
    changes = await score_events.publish_changes(session, settings, as_of)
    await progress(0.8, "strategies")
    await apply_strategies(session)
    await progress(0.9, "tags and segments")
    segments = await refresh_all(session, "recompute")
    return {
        "as_of": as_of.isoformat(),
        "population": int(params["pop"]),
        "lifecycle_changes": changes[events.LIFECYCLE_CHANGED],
        "value_tier_changes": changes[events.VALUE_TIER_CHANGED],
        "churn_risk_changes": changes[events.CHURN_RISK_CHANGED],
        "clv_model_id": model,
        "segments": segments,
    }
