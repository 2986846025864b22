"""The checkout's one write statement, in its eight variants, built once at import.

Data-modifying CTEs: the order, its credit to the ledger (lot, entry, balance: composed
from ``points.ledger.statements``), the outbox events and, with an upgrade, the member's
new tier. Every value is a bound parameter, so a request only binds and executes them.

The locked path's variant (the balance row already locked by the transaction) inserts
the order ``ON CONFLICT DO NOTHING`` and writes the rest only if the order was new.
``if_version``: the optimistic path's variant, one statement with no transaction block
(``points.checkout.record``). It writes the balance row first, and only if the row is
still at the version ``p_row_version`` and no entry that counts toward growth lies in
``[p_window_from, p_window_to)``; everything else is written from that update's row. The
update takes the row lock: under READ COMMITTED, one that waited for a concurrent writer
re-checks its condition against the newest version, which carries another ``xmin``, and
writes nothing. An order id already known makes the order insert fail (no ``ON
CONFLICT``), which undoes the whole statement; the caller takes the locked path, which
replays or refuses it. (Before, the row was locked by a ``SELECT ... FOR UPDATE`` and then
updated: a second pass over the row, a lock record in the WAL and a larger plan to start
on every checkout.)

``upgrade``: the order also moves the member up the ladder. The member's tier
(``p_new_tier``) and a third event (``tier.changed``, ``p_ev2_*``) are written only if the
balance row was (the order is new; on the optimistic path, the version held), and after
it: the balance row is locked first and the member row after it, the one lock order every
writer of a member's tier keeps.

``credit``: an order that earns points (lot, entry, balance credit); without, the order
still writes the member's balance row: the next checkout's version check relies on it to
know that its facts may be out of date.
"""

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    String,
    Table,
    Text,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects.postgresql import JSONB, insert

from loyalty_shared.db import CompiledStatement
from points.db import outbox
from points.ledger import statements as ledger
from points.ledger.models import balances, entries
from points.members.models import Member
from points.orders.models import orders

members_table = cast(Table, Member.__table__)

# JSON parameters of the write: serialised by the plan (orjson), sent as text, cast by
# Postgres. Through SQLAlchemy's JSON type each cost three Python calls at bind time (its
# processor, the serialiser, the asyncpg codec's encoder), seven times per order.
EVENT_JSON = frozenset({"payload", "headers"})
_EVENT_COLUMNS = ["event_id", "topic", "key", "event_type", "payload", "headers"]

# order column -> the parameter it is written from (``points.checkout.plan``)
ORDER_VALUES = {
    "order_id": "p_order_id",
    "member_id": "p_member_id",
    "amount": "p_amount",
    "currency": "p_currency",
    "discount_amount": "p_discount_amount",
    "coupon_used": "p_coupon_used",
    "channel": "p_channel",
    "items": "p_items",
    "occurred_at": "p_occurred_at",
    "points_earned": "p_points",
    "growth_points": "p_growth",
    "breakdown": "p_details",
    "request_hash": "p_request_hash",
    "response": "p_response",
}


def _member_id() -> Any:
    return bindparam("p_member_id", type_=String)


def _row_version() -> Any:
    """The balance row's version after the write (the member facts cache keeps it)."""
    return cast_(literal_column("balances.xmin", Text), Text).label("row_version")


@dataclass(frozen=True)
class Variant:
    if_version: bool  # the optimistic path's (see above)
    upgrade: bool  # the member's new tier and ``tier.changed`` too
    credit: bool  # lot, entry and balance credit (an order with points)

    def balance_values(self) -> dict[str, Any]:
        return ledger.credit_balance_values() if self.credit else {"updated_at": func.now()}

    def order_and_balance(self) -> tuple[Any, Any]:
        """The order and the balance write, in the variant's order (see above)."""
        name = "new_balance" if self.credit else "touched_balance"
        if self.if_version:
            balance_cte = _versioned_balance(self.balance_values(), name)
            return _new_order(balance_cte), balance_cte
        order_cte = _new_order(None)
        return order_cte, _balance_after(order_cte, self.balance_values(), name)

    def statement(self) -> Any:
        order_cte, balance_cte = self.order_and_balance()
        if self.credit:
            lot_cte = ledger.credit_lot("order", order_cte.c.order_id)
            entry_cte = ledger.credit_entry(lot_cte, "order", "purchase")
            columns = [lot_cte.c.id, entry_cte.c.id.label("entry_id")]
            joined = order_cte.outerjoin(lot_cte, true()).outerjoin(entry_cte, true())
        else:
            columns, joined = [], order_cte
        statement = (
            select(order_cte.c.order_id, *columns, balance_cte.c.row_version)
            .select_from(joined.outerjoin(balance_cte, true()))
            .add_cte(_events_of(order_cte, 3 if self.upgrade else 2))
        )
        return statement.add_cte(_new_tier(balance_cte)) if self.upgrade else statement


def _versioned_balance(values: dict[str, Any], name: str) -> Any:
    """The balance row written if still at ``p_row_version`` (optimistic path)."""
    at, member_id = ledger.AT, _member_id()
    return (
        update(balances)
        .where(
            balances.c.member_id == member_id,
            cast_(literal_column("balances.xmin", Text), Text)
            == bindparam("p_row_version", type_=Text),
            # facts remembered from the member's last order were read for another
            # window: its growth value holds only if no entry that counts lies between
            # the two window starts (an empty range when the facts were just read).
            # (An erasure writes the balance row too: ``ledger.touch_balance``.)
            ~exists(
                select(entries.c.id).where(
                    entries.c.member_id == member_id,
                    entries.c.occurred_at >= bindparam("p_window_from", type_=at),
                    entries.c.occurred_at < bindparam("p_window_to", type_=at),
                    entries.c.growth_delta != 0,
                )
            ),
        )
        .values(values)
        .returning(balances.c.member_id, _row_version())
        .cte(name)
    )


def _balance_after(order_cte: Any, values: dict[str, Any], name: str) -> Any:
    """The locked path's balance write, if the order was new."""
    return (
        update(balances)
        .where(balances.c.member_id == _member_id(), exists(select(order_cte.c.order_id)))
        .values(values)
        .returning(balances.c.member_id, _row_version())
        .cte(name)
    )


def _new_order(after: Any | None) -> Any:
    """The order row; ``after``: written from that CTE's row (none: nothing written)."""
    params = [
        ledger.json_text(param)
        if isinstance(orders.c[column].type, JSONB)
        else bindparam(param, type_=orders.c[column].type)
        for column, param in ORDER_VALUES.items()
    ]
    if after is None:  # the locked path: a known order id writes nothing
        insert_order = insert(orders).values(dict(zip(ORDER_VALUES, params, strict=True)))
        insert_order = insert_order.on_conflict_do_nothing(index_elements=[orders.c.order_id])
    else:
        insert_order = insert(orders).from_select(
            list(ORDER_VALUES), select(*params).select_from(after)
        )
    return insert_order.returning(orders.c.order_id).cte("new_order")


def _events_of(order_cte: Any, count: int) -> Any:
    """The outbox rows ``p_ev0_*`` .. ``p_ev{count-1}_*``, if the order was written."""
    rows = [
        select(
            *[
                ledger.json_text(f"p_ev{i}_{col}")
                if col in EVENT_JSON
                else bindparam(f"p_ev{i}_{col}", type_=Text)
                for col in _EVENT_COLUMNS
            ]
        ).select_from(order_cte)
        for i in range(count)
    ]
    return insert(outbox).from_select(_EVENT_COLUMNS, union_all(*rows)).cte("new_events")


def _new_tier(balance_cte: Any) -> Any:
    """The member's new tier, if the balance row was written (``upgrade`` above)."""
    return (
        update(members_table)
        .where(
            members_table.c.member_id == _member_id(),
            exists(select(balance_cte.c.member_id)),
        )
        .values(tier=bindparam("p_new_tier", type_=String))
        .returning(members_table.c.member_id)
        .cte("new_tier")
    )


_WRITES: dict[Variant, CompiledStatement] = {
    variant: CompiledStatement(variant.statement())
    for if_version in (False, True)
    for upgrade in (False, True)
    for credit in (False, True)
    for variant in [Variant(if_version, upgrade, credit)]
}


def write_statement(*, if_version: bool, upgrade: bool, credit: bool) -> CompiledStatement:
    return _WRITES[Variant(if_version, upgrade, credit)]
