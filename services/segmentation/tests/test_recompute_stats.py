"""The recompute's one-pass member statistics equal their textbook SQL definitions.

The statistics avoid sorts (a histogram for the 80th percentile order amount, month
starts from the previous order instead of count(DISTINCT ...)); here they are checked
against percentile_cont / count(DISTINCT) / percentile_cont over every order, on data
with tied amounts, orders at the same instant, months across the window's start and
refunds.
"""

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from segmentation.analytics import recompute
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import member_id, order, refund

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)

_REFERENCE = """
WITH o AS (
    SELECT o.*, o.amount - COALESCE((SELECT sum(r.amount) FROM order_refunds r
                                      WHERE r.order_id = o.order_id
                                        AND r.occurred_at < CAST(:as_of AS timestamptz)), 0) AS net
    FROM member_orders o
    WHERE o.occurred_at < CAST(:as_of AS timestamptz) AND o.member_id = ANY(:members)
), premium AS (
    SELECT percentile_cont(0.8) WITHIN GROUP (ORDER BY amount) AS threshold FROM o
), gaps AS (
    SELECT member_id, extract(epoch FROM occurred_at - lag(occurred_at)
               OVER (PARTITION BY member_id ORDER BY occurred_at, order_id)) / 86400.0 AS gap
    FROM o
)
SELECT o.member_id, count(*) AS n_orders, sum(o.net) AS spend,
       count(DISTINCT date_trunc('month', o.occurred_at AT TIME ZONE 'UTC'))
           FILTER (WHERE o.occurred_at >= CAST(:year_ago AS timestamptz)) AS months_365,
       count(*) FILTER (WHERE o.amount >= (SELECT threshold FROM premium) AND o.amount > 0)
           AS premium_orders,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY g.gap) FROM gaps g
        WHERE g.member_id = o.member_id) AS median_gap
FROM o GROUP BY o.member_id ORDER BY o.member_id
"""


async def test_member_statistics_match_their_definitions(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    rng = random.Random(5)
    members = [member_id() for _ in range(40)]
    events = []
    start = AS_OF - timedelta(days=500)
    for m in members:
        when = start + timedelta(days=rng.randrange(0, 200), hours=rng.randrange(24))
        for _ in range(rng.randrange(1, 9)):
            placed = order(
                m, when.strftime("%Y-%m-%dT%H:%M"), rng.choice(["10.00", "25.00", "25.00", "99.90"])
            )
            events.append(placed)
            if rng.random() < 0.15:
                events.append(
                    refund(m, placed.data["order_id"], "5.00", when.strftime("%Y-%m-%dT%H:%M"))
                )
            if rng.random() < 0.2:  # the next order at the same instant
                continue
            when += timedelta(days=rng.choice([0.5, 3, 17, 31, 45, 120]))
    await env.feed(*events)

    async with env.app.state.sessionmaker() as session, session.begin():
        params = {"as_of": AS_OF, "year_ago": AS_OF - timedelta(days=365)}
        await session.execute(text(recompute._STATS), params)
        ours = (
            await session.execute(
                text(
                    "SELECT member_id, n_orders, spend, months_365, premium_orders, median_gap "
                    "FROM rc_stats WHERE member_id = ANY(:members) ORDER BY member_id"
                ),
                {"members": members},
            )
        ).all()
        reference = (await session.execute(text(_REFERENCE), {**params, "members": members})).all()
    assert len(ours) == len(reference) > 30
    assert {r.months_365 for r in ours} != {0}  # the window is exercised
    for got, want in zip(ours, reference, strict=True):
        assert got[:5] == want[:5]
        if want.median_gap is None:
            assert got.median_gap is None
        else:
            assert abs(got.median_gap - float(want.median_gap)) < 1e-9
