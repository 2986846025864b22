"""The recompute's one-pass member statistics equal their textbook SQL definitions.

The statistics avoid sorts (a histogram for the 80th percentile order amount, month
starts from the previous order instead of count(DISTINCT ...)); here they are checked
against percentile_cont / count(DISTINCT) / percentile_cont over every order, on data
with tied amounts, orders at the same instant, months across the window's start and
refunds. CLV's summary, computed in the same pass, is checked byte for byte (as COPY
writes it for the fit) against the two-pass SQL it replaced (issue #18).
"""

import io
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from loyalty_shared.db import driver_connection
from segmentation.analytics import clv, recompute
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import erased, member_id, order, refund

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


# CLV's summary as it was computed before issue #18: a second pass over the orders of
# the population (rc_stats) with their refunds, per-day sums, then per member.
_TWO_PASS_ORDERS = f"""
CREATE TEMP TABLE rc_orders ON COMMIT DROP AS
SELECT o.member_id, o.occurred_at, o.amount - COALESCE(r.refunded, 0) AS net
FROM member_orders o
JOIN rc_stats s ON s.member_id = o.member_id
LEFT JOIN ({recompute._REFUNDED}) r ON r.order_id = o.order_id
WHERE o.occurred_at < CAST(:as_of AS timestamptz)
"""

_TWO_PASS_SUMMARY = """
WITH days AS (
    SELECT member_id, CAST(occurred_at AT TIME ZONE 'UTC' AS date) AS day, sum(net) AS spend
    FROM rc_orders GROUP BY 1, 2
), firsts AS (
    SELECT member_id, min(day) AS first_day FROM days GROUP BY 1
)
SELECT d.member_id,
       count(*) - 1 AS frequency,
       max(d.day) - f.first_day AS recency,
       CAST(CAST(:as_of AS timestamptz) AT TIME ZONE 'UTC' AS date) - f.first_day AS t_days,
       COALESCE(avg(d.spend) FILTER (WHERE d.day > f.first_day), 0) AS monetary
FROM days d JOIN firsts f USING (member_id)
GROUP BY d.member_id, f.first_day
ORDER BY d.member_id
"""


async def test_clv_summary_equals_the_two_pass_summary(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    rng = random.Random(18)
    members = [member_id() for _ in range(60)]
    events = []
    start = AS_OF - timedelta(days=400)
    for m in members:
        when = start + timedelta(days=rng.randrange(0, 380), minutes=rng.randrange(24 * 60))
        for _ in range(rng.randrange(1, 10)):
            placed = order(
                m,
                when.strftime("%Y-%m-%dT%H:%M"),
                rng.choice(["0.00", "10.00", "25.00", "33.33", "99.90", "100.01"]),
            )
            events.append(placed)
            if rng.random() < 0.2:  # partial, whole, more than the order, or after as_of
                refunded_at = when + timedelta(days=rng.choice([0, 1, 30, 400]))
                amount = rng.choice(["5.00", "0.01", "10.00", "120.00"])
                at = refunded_at.strftime("%Y-%m-%dT%H:%M")
                events.append(refund(m, placed.data["order_id"], amount, at))
            # the same instant, the same UTC day, across midnight, later days, after as_of
            step = rng.choice([0, 1, 30, 60 * 23, 60 * 24, 60 * 24 * 9, 60 * 24 * 40])
            when += timedelta(minutes=step)
    ghost = members[0]
    events.append(erased(ghost))  # its orders stay under a pseudonym, out of the population
    await env.feed(*events)

    async with env.app.state.sessionmaker() as session, session.begin():
        params = {"as_of": AS_OF, "year_ago": AS_OF - timedelta(days=365)}
        await session.execute(text(recompute._STATS), params)
        await session.execute(text(_TWO_PASS_ORDERS), {"as_of": AS_OF})
        conn = await driver_connection(session)

        async def copied(query: str) -> bytes:
            buffer = io.BytesIO()
            query = query.replace("CAST(:as_of AS timestamptz)", "CAST($1 AS timestamptz)")
            await conn.copy_from_query(query, AS_OF, output=buffer, format="csv")
            return buffer.getvalue()

        ours = await copied(clv._SUMMARY)
        reference = await copied(_TWO_PASS_SUMMARY)
        population = (await session.execute(text("SELECT count(*) FROM rc_stats"))).scalar_one()
    assert ours == reference
    rows = [line.split(",") for line in ours.decode().splitlines()]
    assert len(rows) == population == len(members) - 1
    assert ghost not in {row[0] for row in rows}
    assert {row[4] for row in rows if row[1] == "0"} == {"0"}  # one purchase day
    assert any(row[1] != "0" for row in rows)
    assert any(row[4].startswith("-") for row in rows)  # refunds beyond the spend
