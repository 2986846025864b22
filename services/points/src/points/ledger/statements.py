"""A credit to the ledger as Core pieces, for a path that writes in one statement.

``Posting`` (``points.ledger.service``) writes an operation's entries under a lock taken
beforehand, a few statements each. The checkout writes an order's credit inside its one
statement of data-modifying CTEs (``points.checkout.writes``) and composes it from these:
the lot, its entry and the balance row's new values, the same rows ``Posting.credit`` and
``Posting.finish`` write. Every value is a bound parameter:

- ``p_member_id``, ``p_points`` (> 0), ``p_occurred_at`` (earned at), ``p_growth``;
- ``p_lot_status``, ``p_available_at``, ``p_expires_at`` (the lot);
- ``p_entry_type``, ``p_d_available``, ``p_d_pending``, ``p_earn_key`` (the entry's
  idempotency key), ``p_details`` (JSON text);
- ``p_window_start``, ``p_window_sum``, ``p_cache_entry_id``: the balance row's window
  cache (``ledger.window_growth``) as the writer read it.
"""

from typing import Any

from sqlalchemy import BigInteger, DateTime, String, Text, bindparam, literal_column, select
from sqlalchemy import cast as cast_
from sqlalchemy.dialects.postgresql import JSONB, insert

from points.ledger.models import balances, entries, lots

AT = DateTime(timezone=True)


def json_text(name: str) -> Any:
    """A JSON parameter sent as text and cast by Postgres (serialised by the caller)."""
    return cast_(bindparam(name, type_=Text), JSONB)


def credit_balance_values() -> dict[str, Any]:
    """The balance row's new values for a credit; this credit's entry counts as written
    since the window cache (as the writer read it)."""
    return {
        "available": balances.c.available + bindparam("p_d_available", type_=BigInteger),
        "pending": balances.c.pending + bindparam("p_d_pending", type_=BigInteger),
        "lifetime_earned": balances.c.lifetime_earned + bindparam("p_points", type_=BigInteger),
        "growth_value": balances.c.growth_value + bindparam("p_growth", type_=BigInteger),
        "growth_cache_start": bindparam("p_window_start", type_=AT),
        "growth_cache_sum": bindparam("p_window_sum", type_=BigInteger),
        "growth_cache_entry_id": bindparam("p_cache_entry_id", type_=BigInteger),
    }


def credit_lot(source_type: str, source_id: Any) -> Any:
    """The credit's lot (``new_lot``: ``id``, ``source_id``), one row per row of ``source_id``'s
    statement (none: nothing written)."""
    return (
        insert(lots)
        .from_select(
            [
                "member_id",
                "points",
                "remaining",
                "status",
                "source_type",
                "source_id",
                "earned_at",
                "available_at",
                "expires_at",
            ],
            select(
                bindparam("p_member_id", type_=String),
                bindparam("p_points", type_=BigInteger),
                bindparam("p_points", type_=BigInteger),
                bindparam("p_lot_status", type_=String),
                literal_column(f"'{source_type}'", String),
                source_id,
                bindparam("p_occurred_at", type_=AT),
                bindparam("p_available_at", type_=AT),
                bindparam("p_expires_at", type_=AT),
            ),
        )
        .returning(lots.c.id, lots.c.source_id)
        .cte("new_lot")
    )


def credit_entry(lot_cte: Any, source_type: str, reason: str) -> Any:
    """The lot's entry (``new_entry``: ``id``), written with the lot."""
    return (
        insert(entries)
        .from_select(
            [
                "member_id",
                "entry_type",
                "points",
                "pending_delta",
                "lot_id",
                "reason",
                "source_type",
                "source_id",
                "idempotency_key",
                "occurred_at",
                "growth_delta",
                "details",
            ],
            select(
                bindparam("p_member_id", type_=String),
                bindparam("p_entry_type", type_=String),
                bindparam("p_d_available", type_=BigInteger),
                bindparam("p_d_pending", type_=BigInteger),
                lot_cte.c.id,
                literal_column(f"'{reason}'", Text),
                literal_column(f"'{source_type}'", String),
                lot_cte.c.source_id,
                bindparam("p_earn_key", type_=Text),
                bindparam("p_occurred_at", type_=AT),
                bindparam("p_growth", type_=BigInteger),
                json_text("p_details"),
            ),
        )
        .returning(entries.c.id)
        .cte("new_entry")
    )
