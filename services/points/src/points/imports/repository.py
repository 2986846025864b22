"""The history import's statements: one round trip per table and batch, never per order.

Every statement runs on the session's asyncpg connection (``driver_connection``), inside the
request's transaction, and takes its rows as arrays (``unnest``): a batch of 1,000 orders is
one ``INSERT`` of orders, one of lots and entries, one of outbox rows, one ``UPDATE`` of the
balances, however many members it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


async def known_orders(conn: asyncpg.Connection, order_ids: Sequence[str]) -> dict[str, str]:
    """The order ids already recorded, with the fingerprint of the body each was recorded with."""
    rows = await conn.fetch(
        "SELECT o.order_id, o.request_hash FROM unnest($1::text[]) AS i(id) "
        "JOIN orders o ON o.order_id = i.id",
        list(order_ids),
    )
    return {r["order_id"]: r["request_hash"] for r in rows}


async def existing_members(conn: asyncpg.Connection, member_ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT m.member_id FROM unnest($1::text[]) AS i(id) JOIN members m ON m.member_id = i.id",
        list(member_ids),
    )
    return {r["member_id"] for r in rows}


@dataclass(frozen=True)
class NewMember:
    member_id: str
    timezone: str
    referral_code: str
    tier: str
    next_evaluation_at: datetime
    enrolled_at: datetime  # a history's member: since its first order in the batch


async def enrol_members(conn: asyncpg.Connection, new: Sequence[NewMember]) -> list[str]:
    """Members and their balance rows, as ``POST /v1/members`` writes them (several at once);
    the ids actually inserted (one enrolled meanwhile by another writer is left as it is)."""
    if not new:
        return []
    rows = await conn.fetch(
        "INSERT INTO members (member_id, timezone, referral_code, referred_by, enrolled_at, "
        "tier, next_evaluation_at) "
        "SELECT m, z, c, NULL, s, t, e FROM unnest($1::text[], $2::text[], $3::text[], "
        "$4::text[], $5::timestamptz[], $6::timestamptz[]) AS n(m, z, c, t, e, s) ORDER BY m "
        "ON CONFLICT (member_id) DO NOTHING RETURNING member_id",
        [n.member_id for n in new],
        [n.timezone for n in new],
        [n.referral_code for n in new],
        [n.tier for n in new],
        [n.next_evaluation_at for n in new],
        [n.enrolled_at for n in new],
    )
    inserted = sorted(r["member_id"] for r in rows)
    await conn.execute("INSERT INTO balances (member_id) SELECT unnest($1::text[])", inserted)
    return inserted


# Every balance row the import may write (its members', and their referrers': a first
# order credits the referrer), locked in member id order before any is written: a
# concurrent writer of several members (the tier ladder, another import, a consumer batch)
# would otherwise meet them halfway. Members it enrols were locked by their insert.
#
# Every statement here starts from the batch's ids (``unnest``) and reaches each table by
# its key: the planner then knows how many rows come (the array's length) and looks each up
# by index. Written as ``key = ANY($1)`` over a table whose statistics are stale (a fresh
# database filling up faster than autovacuum analyzes it), it estimated one row and joined
# with a scan of the whole other table per row: quadratic, 12 s for a batch of 1,000.
_LOCK_BALANCES = (
    "SELECT b.member_id FROM balances b "
    "WHERE b.member_id IN (SELECT unnest($1::text[]) UNION "
    "SELECT m.referred_by FROM unnest($1::text[]) AS i(id) JOIN members m ON m.member_id = i.id "
    "WHERE m.referred_by IS NOT NULL) "
    "ORDER BY b.member_id FOR UPDATE OF b"
)

# Read after the lock (a statement of its own, so it sees what the writers it waited for
# committed): what the orders need to know of each live member.
_FACTS = (
    "SELECT b.member_id, b.available, b.pending, b.debt, b.lifetime_earned, b.growth_value, "
    "m.tier, m.referred_by, "
    "EXISTS (SELECT 1 FROM orders o WHERE o.member_id = b.member_id) AS has_orders "
    "FROM unnest($1::text[]) AS i(id) JOIN balances b ON b.member_id = i.id "
    "JOIN members m ON m.member_id = i.id WHERE m.erased_at IS NULL"
)


@dataclass
class MemberFacts:
    """A member's books as the import found them (under the lock), then as it moves them."""

    member_id: str
    available: int
    pending: int
    debt: int
    lifetime_earned: int
    growth_value: int
    tier: str
    referred_by: str | None
    has_orders: bool
    # ledger entries that count toward growth: (occurred_at, growth_delta)
    growth: list[tuple[datetime, int]]


async def lock_and_read(
    conn: asyncpg.Connection, member_ids: Sequence[str], growth_since: datetime
) -> dict[str, MemberFacts]:
    """Lock the members' (and their referrers') balance rows in id order; read their facts
    and their growth entries dated from ``growth_since`` on."""
    ids = sorted(member_ids)
    await conn.fetch(_LOCK_BALANCES, ids)
    facts = {
        r["member_id"]: MemberFacts(
            r["member_id"],
            r["available"],
            r["pending"],
            r["debt"],
            r["lifetime_earned"],
            r["growth_value"],
            r["tier"],
            r["referred_by"],
            r["has_orders"],
            [],
        )
        for r in await conn.fetch(_FACTS, ids)
    }
    rows = await conn.fetch(
        "SELECT e.member_id, e.occurred_at, e.growth_delta FROM unnest($1::text[]) AS i(id) "
        "JOIN ledger_entries e ON e.member_id = i.id "
        "WHERE e.occurred_at >= $2 AND e.growth_delta <> 0 "
        "ORDER BY e.member_id, e.occurred_at, e.id",
        list(facts),
        growth_since,
    )
    for r in rows:
        facts[r["member_id"]].growth.append((r["occurred_at"], r["growth_delta"]))
    return facts


class Columns:
    """Rows of one table gathered column by column (``unnest`` takes one array per column)."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.values: dict[str, list[Any]] = {n: [] for n in names}

    def add(self, row: dict[str, Any]) -> None:
        for name in self.names:
            self.values[name].append(row[name])

    def __len__(self) -> int:
        return len(self.values[self.names[0]])

    def arrays(self) -> list[list[Any]]:
        return [self.values[n] for n in self.names]


# each table's columns as the statements take them, with their array types
_ORDER_TYPES = {
    "order_id": "text",
    "member_id": "text",
    "amount": "numeric",
    "currency": "text",
    "discount_amount": "numeric",
    "coupon_used": "text",
    "channel": "text",
    "items": "text",  # JSON columns as text, cast to jsonb by the statement
    "occurred_at": "timestamptz",
    "points_earned": "bigint",
    "growth_points": "bigint",
    "breakdown": "text",
    "request_hash": "text",
    "response": "text",
}
ORDER_COLUMNS = tuple(_ORDER_TYPES)
_ORDER_JSON = {"items", "breakdown", "response"}

_CREDIT_TYPES = {
    "member_id": "text",
    "points": "bigint",
    "status": "text",
    "source_id": "text",
    "earned_at": "timestamptz",
    "available_at": "timestamptz",
    "expires_at": "timestamptz",
    "entry_type": "text",
    "d_available": "bigint",
    "d_pending": "bigint",
    "earn_key": "text",
    "growth": "bigint",
    "details": "text",
}
CREDIT_COLUMNS = tuple(_CREDIT_TYPES)

EVENT_COLUMNS = ("event_id", "topic", "key", "event_type", "payload", "headers")

BALANCE_COLUMNS = ("member_id", "d_available", "d_pending", "d_earned", "d_growth")

TIER_COLUMNS = ("member_id", "tier")


def _unnest(names: Iterable[str], types: Iterable[str]) -> str:
    names, types = list(names), list(types)
    arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    return f"unnest({arrays}) WITH ORDINALITY AS t({', '.join(names)}, ord)"


def _order_select() -> str:
    return ", ".join(f"t.{c}::jsonb" if c in _ORDER_JSON else f"t.{c}" for c in ORDER_COLUMNS)


_INSERT_ORDERS = (
    f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) "
    f"SELECT {_order_select()} FROM {_unnest(ORDER_COLUMNS, _ORDER_TYPES.values())} ORDER BY t.ord"
)

# the lots, then an entry per lot (joined back by order id: one lot per order), both in
# the order the rows come (each member's in time order, as one-by-one would number them)
_INSERT_CREDITS = (
    "WITH new_lots AS (INSERT INTO lots (member_id, points, remaining, status, source_type, "
    "source_id, earned_at, available_at, expires_at) "
    "SELECT t.member_id, t.points, t.points, t.status, 'order', t.source_id, t.earned_at, "
    "t.available_at, t.expires_at "
    f"FROM {_unnest(CREDIT_COLUMNS, _CREDIT_TYPES.values())} ORDER BY t.ord "
    "RETURNING id, source_id) "
    "INSERT INTO ledger_entries (member_id, entry_type, points, pending_delta, lot_id, reason, "
    "source_type, source_id, idempotency_key, occurred_at, growth_delta, details) "
    "SELECT t.member_id, t.entry_type, t.d_available, t.d_pending, l.id, 'purchase', 'order', "
    f"t.source_id, t.earn_key, t.earned_at, t.growth, t.details::jsonb "
    f"FROM {_unnest(CREDIT_COLUMNS, _CREDIT_TYPES.values())} "
    "JOIN new_lots l ON l.source_id = t.source_id ORDER BY t.ord"
)

_INSERT_EVENTS = (
    "INSERT INTO outbox (event_id, topic, key, event_type, payload, headers) "
    "SELECT t.event_id, t.topic, t.key, t.event_type, t.payload::jsonb, t.headers::jsonb "
    f"FROM {_unnest(EVENT_COLUMNS, ['text'] * 6)} ORDER BY t.ord"
)

# every member with a new order has its balance row written, points or not: the optimistic
# checkout relies on the row's version to know its remembered facts are out of date
_UPDATE_BALANCES = (
    "UPDATE balances b SET available = b.available + t.d_available, "
    "pending = b.pending + t.d_pending, lifetime_earned = b.lifetime_earned + t.d_earned, "
    "growth_value = b.growth_value + t.d_growth, updated_at = now() "
    f"FROM {_unnest(BALANCE_COLUMNS, ['text', 'bigint', 'bigint', 'bigint', 'bigint'])} "
    "WHERE b.member_id = t.member_id"
)

_UPDATE_TIERS = (
    "UPDATE members m SET tier = t.tier "
    f"FROM {_unnest(TIER_COLUMNS, ['text', 'text'])} WHERE m.member_id = t.member_id"
)


@dataclass
class Writes:
    """Everything a batch writes, gathered while its orders are planned."""

    orders: Columns
    credits: Columns
    events: Columns
    balances: Columns
    tiers: Columns

    @classmethod
    def empty(cls) -> Writes:
        return cls(
            Columns(*ORDER_COLUMNS),
            Columns(*CREDIT_COLUMNS),
            Columns(*EVENT_COLUMNS),
            Columns(*BALANCE_COLUMNS),
            Columns(*TIER_COLUMNS),
        )


async def write(conn: asyncpg.Connection, writes: Writes) -> None:
    """The batch's writes: orders first (their ids are the lots' sources), then credits,
    balances, tiers, and the events last (in the same transaction: all or nothing)."""
    if not writes.orders:
        return
    await conn.execute(_INSERT_ORDERS, *writes.orders.arrays())
    if writes.credits:
        await conn.execute(_INSERT_CREDITS, *writes.credits.arrays())
    await conn.execute(_UPDATE_BALANCES, *writes.balances.arrays())
    if writes.tiers:
        await conn.execute(_UPDATE_TIERS, *writes.tiers.arrays())
    await conn.execute(_INSERT_EVENTS, *writes.events.arrays())
