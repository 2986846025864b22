"""What a checkout reads about the member before it writes: ``OrderMember``.

Two ways to read it: ``lock_for_order`` (the locked path: the balance row locked, in a
transaction) and ``read_for_order`` (the optimistic path: unlocked, with the balance row's
version, on a connection outside any transaction).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import DateTime, String, Text, bindparam, exists, literal_column, select
from sqlalchemy import cast as cast_
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.db import CompiledStatement, driver_connection
from points.ledger import service as ledger
from points.ledger.models import balances
from points.members.models import Member
from points.orders.models import orders


@dataclass(frozen=True)
class OrderMember:
    """The member's balance row (locked) and what the order needs to know about the member."""

    locked: ledger.LockedBalance
    growth_value: int  # over the ladder's rolling window, as of the order
    has_orders: bool
    referred_by: str | None
    # for the balance row's window cache (``ledger.window_growth``)
    window_start: datetime
    window_sum: int  # the exact sum (growth_value is never below 0)
    latest_entry_id: int

    @property
    def rare(self) -> bool:
        """A case only the locked path records: a debt to repay, a referral to credit."""
        return self.locked.debt > 0 or (not self.has_orders and self.referred_by is not None)


def _statements() -> tuple[Any, Any, Any]:
    """The balance lock with the member's facts; and the facts alone, for a lock that waited.

    Under READ COMMITTED a statement reads the database as of its start. A ``SELECT ...
    FOR UPDATE`` that waited for another checkout of the same member locks (and returns)
    that checkout's balance row, because Postgres re-reads the row it locks, but the rest
    of the statement still sees the database from before: not that checkout's order nor
    its ledger entry. So "is this the first order" and the window's growth value could
    miss a concurrent order (8 simultaneous first orders all got a first-order bonus).

    The locking statement therefore also says whether the row it locked is the version its
    own snapshot sees (``xmin``, the transaction that wrote the row version, is the same).
    Every write of an order or a ledger entry updates the member's balance row, so when the
    two agree nothing was committed for this member after the snapshot and the facts read
    with the lock hold. When they differ (the lock waited for a writer), the facts are read
    again by a second statement, which sees every write the lock waited for. The member's
    tier is read again too: the checkout the lock waited for may have upgraded it (its
    multiplier applies, and the upgrade must not be made, and evented, twice).
    """
    members = Member.__table__
    member_id = bindparam("p_member_id", type_=String)
    snapshot_balance = balances.alias("snapshot_balance")
    facts = (
        ledger.window_growth(bindparam("p_window_start", type_=DateTime(True))).label(
            "rolling_growth"
        ),
        ledger.latest_entry_id().label("latest_entry_id"),
        exists(select(orders.c.order_id).where(orders.c.member_id == member_id)).label(
            "has_orders"
        ),
    )
    row_version = literal_column("balances.xmin", Text)
    lock = ledger.balance_lock_statement(
        members.c.referred_by,
        *facts,
        (
            row_version
            == select(literal_column("snapshot_balance.xmin", Text))
            .where(snapshot_balance.c.member_id == member_id)
            .scalar_subquery()
        ).label("facts_current"),
        live_only=True,
        member_id=member_id,
    )
    # read again: the facts and the member's tier (a checkout the lock waited for may have
    # upgraded it), for a member that is still not erased
    again = (
        select(*facts, members.c.tier)
        .join_from(balances, members, members.c.member_id == balances.c.member_id)
        .where(balances.c.member_id == member_id, members.c.erased_at.is_(None))
    )
    # the optimistic attempt's read: the same, unlocked, with the row version it saw
    snapshot = ledger.balance_lock_statement(
        members.c.referred_by,
        *facts,
        cast_(row_version, Text).label("row_version"),
        live_only=True,
        member_id=member_id,
        lock=False,
    )
    return lock, again, snapshot


_LOCK_FOR_ORDER, _ORDER_FACTS, _SNAPSHOT_FOR_ORDER = (CompiledStatement(s) for s in _statements())


async def lock_for_order(
    session: AsyncSession, member_id: str, window_start: datetime
) -> OrderMember | None:
    """Lock the member's balance row and read its facts; None: unknown or erased."""
    conn = await driver_connection(session)
    params = {"p_member_id": member_id, "p_window_start": window_start}
    row = await _LOCK_FOR_ORDER.fetchrow(conn, params)
    if row is None:
        return None
    facts = row if row["facts_current"] else await _ORDER_FACTS.fetchrow(conn, params)
    if facts is None:  # erased while this checkout waited for the lock
        return None
    return _order_member(row, facts, window_start)


async def read_for_order(
    conn: asyncpg.Connection, member_id: str, window_start: datetime
) -> tuple[OrderMember, str] | None:
    """The member's facts without a lock, and the balance row version they were read with."""
    params = {"p_member_id": member_id, "p_window_start": window_start}
    row = await _SNAPSHOT_FOR_ORDER.fetchrow(conn, params)
    if row is None:
        return None
    return _order_member(row, row, window_start), row["row_version"]


def _order_member(row: Any, facts: Any, window_start: datetime) -> OrderMember:
    locked = ledger.LockedBalance(
        row["member_id"],
        row["available"],
        row["pending"],
        row["debt"],
        row["lifetime_earned"],
        row["growth_value"],
        facts["tier"],
    )
    window_sum = int(facts["rolling_growth"])
    return OrderMember(
        locked,
        max(0, window_sum),
        bool(facts["has_orders"]),
        row["referred_by"],
        window_start,
        window_sum,
        int(facts["latest_entry_id"]),
    )
