"""Recompute every balance from the ledger in one statement and report what drifted.

The ledger is append-only; ``balances`` is a cache written in the same transaction as the
entries it sums, and every lot's ``remaining`` moves with its entries. Nothing should ever
differ; this finds it if something did (a bug, a hand-made UPDATE, a restore gone wrong).
For every member, and every lot:

- ``available`` / ``pending`` / ``debt`` = the sums of the entries' ``points`` /
  ``pending_delta`` / ``debt_delta``;
- ``lifetime_earned`` = what the crediting entries (``earn``, ``pending``) credited, less
  what refunds reversed (``refunds.points_reversed``);
- ``growth_value`` = the sum of the entries' ``growth_delta``;
- ``growth_cache_sum`` = that sum over the entries the balance row's window cache covers
  (id up to ``growth_cache_entry_id``, dated from ``growth_cache_start``);
- ``pending_lots`` / ``spendable_lots``: ``pending`` = what pending lots hold, ``available`` =
  what available lots hold less the debt;
- ``lot_remaining`` (per lot) = the sum of its entries.

One statement, so one snapshot of the whole ledger: the entries are read once (grouped by
member and by lot at the same time, ``GROUPING SETS``), the lots, refunds and balances once
each. No loop over members in Python.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from points.reconciliation.schemas import Drift, LedgerReport

VERIFY_SQL = text(
    """
    WITH entry_sums AS MATERIALIZED (
        SELECT e.member_id, e.lot_id, GROUPING(e.lot_id) AS per_member,
               sum(e.points) AS available,
               sum(e.pending_delta) AS pending,
               sum(e.debt_delta) AS debt,
               sum(e.growth_delta) AS growth,
               coalesce(sum(e.points + e.pending_delta)
                        FILTER (WHERE e.entry_type IN ('earn', 'pending')), 0) AS credited,
               sum(e.points + e.pending_delta + e.debt_delta) AS lot_delta,
               coalesce(sum(e.growth_delta)
                        FILTER (WHERE e.id <= b.growth_cache_entry_id
                                  AND e.occurred_at >= b.growth_cache_start), 0) AS cached
        FROM ledger_entries e LEFT JOIN balances b ON b.member_id = e.member_id
        GROUP BY GROUPING SETS ((e.member_id), (e.lot_id))
    ), per_member AS (
        SELECT * FROM entry_sums WHERE per_member = 1
    ), per_lot AS MATERIALIZED (
        SELECT l.id, l.member_id, l.status, l.remaining, coalesce(s.lot_delta, 0) AS from_entries
        FROM lots l
        LEFT JOIN entry_sums s ON s.per_member = 0 AND s.lot_id = l.id
    ), lot_sums AS (
        SELECT member_id,
               sum(remaining) FILTER (WHERE status = 'pending') AS pending,
               sum(remaining) FILTER (WHERE status = 'available') AS spendable
        FROM per_lot GROUP BY member_id
    ), refund_sums AS (
        SELECT member_id, sum(points_reversed) AS reversed FROM refunds GROUP BY member_id
    ), member_drift AS (
        SELECT coalesce(b.member_id, m.member_id) AS member_id, NULL::bigint AS lot_id,
               c.field, c.expected, c.actual
        FROM balances b
        FULL JOIN per_member m ON m.member_id = b.member_id
        LEFT JOIN lot_sums ls ON ls.member_id = coalesce(b.member_id, m.member_id)
        LEFT JOIN refund_sums r ON r.member_id = coalesce(b.member_id, m.member_id)
        CROSS JOIN LATERAL (VALUES
            ('available', coalesce(m.available, 0), b.available),
            ('pending', coalesce(m.pending, 0), b.pending),
            ('debt', coalesce(m.debt, 0), b.debt),
            ('lifetime_earned', coalesce(m.credited, 0) - coalesce(r.reversed, 0),
             b.lifetime_earned),
            ('growth_value', coalesce(m.growth, 0), b.growth_value),
            ('growth_cache_sum',
             CASE WHEN b.growth_cache_start IS NULL THEN b.growth_cache_sum
                  ELSE coalesce(m.cached, 0) END,
             b.growth_cache_sum),
            ('pending_lots', coalesce(ls.pending, 0), b.pending),
            ('spendable_lots', coalesce(ls.spendable, 0) - b.debt, b.available)
        ) AS c(field, expected, actual)
    ), drift AS (
        SELECT member_id, lot_id, field, expected, actual FROM member_drift
        WHERE expected IS DISTINCT FROM actual
        UNION ALL
        SELECT member_id, id, 'lot_remaining', from_entries, remaining FROM per_lot
        WHERE from_entries IS DISTINCT FROM remaining
    ), totals AS (
        SELECT (SELECT count(*) FROM balances) AS members,
               (SELECT count(*) FROM per_lot) AS lots,
               (SELECT count(*) FROM drift) AS drifted
    )
    SELECT t.members, t.lots, t.drifted, d.member_id, d.lot_id, d.field, d.expected, d.actual
    FROM totals t
    LEFT JOIN LATERAL (
        SELECT * FROM drift ORDER BY member_id, field, lot_id LIMIT :limit
    ) d ON true
    """
)


async def verify_ledger(
    session: AsyncSession | AsyncConnection, *, limit: int = 1000
) -> LedgerReport:
    """Every balance and lot checked against the ledger; at most ``limit`` drifts listed."""
    checked_at = datetime.now(UTC)
    rows = (await session.execute(VERIFY_SQL, {"limit": limit})).all()
    first = rows[0]
    return LedgerReport(
        checked_at=checked_at,
        members=int(first.members),
        lots=int(first.lots),
        drift_count=int(first.drifted),
        drift=[
            Drift(
                member_id=r.member_id,
                field=r.field,
                expected=r.expected,
                actual=r.actual,
                lot_id=r.lot_id,
            )
            for r in rows
            if r.field is not None
        ],
    )
