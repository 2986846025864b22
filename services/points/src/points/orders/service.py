"""Recording completed orders: points earned once per order id (the hot path of every checkout).

Three ways, tried in order (docs/performance.md, "What a checkout does"):
``record_order_optimistic`` writes a plain checkout in one statement with the facts the
member's last checkout left (``OrderFactsCache``), or in two after reading them, with no
transaction block: the write happens only if the balance row is still at the version the
facts were read with. Otherwise ``record_order`` (the locked path): lock the balance row
and read the facts (the rolling window's growth value, from the balance row's window
cache, and whether this is the first order); one statement of data-modifying CTEs (order,
lot, entry, balance and the two outbox events). The tier ladder and the running campaigns
come from the in-process ``RulesCache`` (a few seconds old at most). An order that moves
the member up the ladder writes the member's tier and ``tier.changed`` in the same
statement, on either path. Only rare cases cost more, and always take the locked path: a
member in debt (the repayment entries), a referred member's first order (referral credits).

Points: ``floor(base x tier multiplier) + campaign bonus``; the entry's ``details`` and
the earned event's ``breakdown`` say how (base, tier bonus, campaigns).
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import orjson
from sqlalchemy import (
    BigInteger,
    DateTime,
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
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from loyalty_shared import jsontext
from loyalty_shared.db import CompiledStatement, DriverAutocommit, driver_connection
from loyalty_shared.outbox import outbox_row
from loyalty_shared.topics import POINTS_EVENTS
from points import events
from points.campaigns.calculator import Campaign
from points.db import outbox
from points.errors import IdempotencyConflict, UnknownMember
from points.ledger import models as lm
from points.ledger import service as ledger
from points.ledger.models import balances, entries, lots
from points.members.models import Member
from points.orders.earning import Earning, compute_earning
from points.orders.facts_cache import OrderFactsCache, RememberedFacts
from points.orders.models import orders
from points.orders.schemas import BalanceSummary, OrderIn, OrderOut
from points.rules_cache import RulesCache, earning_data
from points.settings import PointsSettings
from points.tiers import service as tiers
from points.tiers.schemas import TierLadderIn
from points.tiers.upgrades import Upgrade, held_tier, upgrade_for

members_table = cast(Table, Member.__table__)


def request_fingerprint(data: OrderIn) -> str:
    canonical = orjson.dumps(data.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def earn_key(order_id: str) -> str:
    return f"order:{order_id}:earn"


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


def _order_statements_before_write() -> tuple[Any, Any, Any]:
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
    from points.members.models import Member

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


_LOCK_FOR_ORDER, _ORDER_FACTS, _SNAPSHOT_FOR_ORDER = (
    CompiledStatement(s) for s in _order_statements_before_write()
)


async def lock_for_order(
    session: AsyncSession, member_id: str, window_start: datetime
) -> OrderMember | None:
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


@dataclass(frozen=True)
class OrderPlan:
    """What recording the order writes and answers, worked out from the member's facts."""

    fingerprint: str
    earning: Earning
    upgrade: Upgrade | None
    new_growth: int
    pending: bool
    response: OrderOut
    params: dict[str, Any]  # the write statement's parameters

    def statement(self, *, if_version: bool = False) -> CompiledStatement:
        """The write: order only (no points) or with its credit, and the upgrade if there is
        one (``p_new_tier``, ``p_ev2_*``); ``if_version`` for the optimistic path (written
        only if the balance row is at ``p_row_version``)."""
        order_only, with_credit = _WRITES[if_version, self.upgrade is not None]
        return order_only if self.earning.points <= 0 else with_credit


def plan_order(
    settings: PointsSettings,
    data: OrderIn,
    ladder: TierLadderIn,
    campaigns: list[Campaign],
    member: OrderMember,
    now: datetime,
) -> OrderPlan:
    locked = member.locked
    tier = held_tier(ladder, locked.tier, member.growth_value)
    earning = compute_earning(
        ladder,
        campaigns,
        settings.earn_rate,
        data,
        tier=tier,
        is_first_order=not member.has_orders,
    )
    points = earning.points
    new_growth = max(0, member.window_sum + earning.growth)  # as the member status shows it
    upgrade = upgrade_for(
        ladder,
        data.member_id,
        locked.tier,
        tier,
        growth_value=new_growth,
        reason="order",
        at=data.occurred_at,
    )
    new_tier = upgrade.to_tier if upgrade is not None else locked.tier
    available_at = data.occurred_at + timedelta(days=settings.pending_days)
    pending = points > 0 and available_at > now
    expires_at = ledger.expiry_for(data.occurred_at, settings.expiry_months)
    details = earning.details()
    response = OrderOut(
        order_id=data.order_id,
        member_id=data.member_id,
        points_earned=points,
        points_pending=points if pending else 0,
        campaigns_applied=earning.campaign.applied,
        balance=BalanceSummary(
            available=locked.available + (0 if pending else points),
            pending=locked.pending + (points if pending else 0),
        ),
        tier=new_tier,
        tier_changed=upgrade is not None,
    )
    currency = data.currency or settings.default_currency
    items = [i.model_dump(mode="json") for i in data.items]
    order_event = events.outbox_row(
        events.ORDER_RECORDED,
        data.member_id,
        {
            "order_id": data.order_id,
            "member_id": data.member_id,
            "amount": str(data.amount),
            "currency": currency,
            "discount_amount": str(data.discount_amount),
            "coupon_used": data.coupon_used,
            "channel": data.channel,
            "items": items,
            "occurred_at": data.occurred_at.isoformat(),
            "points_earned": points,
            "points_pending": response.points_pending,
            "campaigns_applied": earning.campaign.applied,
            "first_order": not member.has_orders,
        },
        time=data.occurred_at,
    )
    earned_event = events.outbox_row(
        events.POINTS_EARNED,
        data.member_id,
        {
            "member_id": data.member_id,
            "points": points,
            "pending": pending,
            "available_at": available_at.isoformat(),
            "expires_at": expires_at.isoformat() if expires_at else None,
            "source_type": "order",
            "source_id": data.order_id,
            "occurred_at": data.occurred_at.isoformat(),
            "balance_available": response.balance.available,
            "balance_pending": response.balance.pending,
            "breakdown": details,
        },
        time=data.occurred_at,
    )
    fingerprint = request_fingerprint(data)
    params: dict[str, Any] = {
        "p_order_id": data.order_id,
        "p_member_id": data.member_id,
        "p_amount": data.amount,
        "p_currency": currency,
        "p_discount_amount": data.discount_amount,
        "p_coupon_used": data.coupon_used,
        "p_channel": data.channel,
        "p_items": jsontext.dumps(items),
        "p_occurred_at": data.occurred_at,
        "p_points": points,
        "p_growth": earning.growth,
        "p_details": jsontext.dumps(details),
        "p_request_hash": fingerprint,
        # as the API answers it (the stored answer replays it)
        "p_response": response.__pydantic_serializer__.to_json(response).decode(),
    }
    for i, event_row in enumerate((order_event, earned_event)):
        params.update(_event_params(i, event_row))
    if upgrade is not None:
        params.update(_upgrade_params(upgrade))
    if points > 0:
        params.update(_credit_params(data, member, points, pending, available_at, expires_at))
    return OrderPlan(fingerprint, earning, upgrade, new_growth, pending, response, params)


def _credit_params(
    data: OrderIn,
    member: OrderMember,
    points: int,
    pending: bool,
    available_at: datetime,
    expires_at: datetime | None,
) -> dict[str, Any]:
    """The write's lot, entry and balance-window-cache parameters (an order with points)."""
    return {
        "p_lot_status": lm.LOT_PENDING if pending else lm.LOT_AVAILABLE,
        "p_available_at": available_at,
        "p_expires_at": expires_at,
        "p_entry_type": lm.PENDING if pending else lm.EARN,
        "p_d_available": 0 if pending else points,
        "p_d_pending": points if pending else 0,
        "p_earn_key": earn_key(data.order_id),
        "p_window_start": member.window_start,
        "p_window_sum": member.window_sum,
        "p_cache_entry_id": member.latest_entry_id,
    }


async def record_order_optimistic(
    engine: AsyncEngine,
    settings: PointsSettings,
    data: OrderIn,
    cache: RulesCache,
    *,
    remembered: OrderFactsCache | None = None,
    now: datetime | None = None,
    slot_held: bool = False,
) -> OrderOut | None:
    """Record a plain checkout with no transaction block and no lock held; None: not done.

    The common checkout (a known, live member; no debt to repay, no referral to credit;
    rules in the cache; a tier upgrade included) needs no lock held across round trips. The
    first statement reads the member's facts and the version (``xmin``) of the balance
    row they were read with. The second writes everything (order, lot, entry, balance,
    events; the member's new tier and ``tier.changed`` for an upgrade) in one statement
    that Postgres commits by itself, and only if it can update the
    balance row still at that version: every change to what an order reads about a member
    writes that row (``ledger.touch_balance``), so an unchanged version means the facts
    still hold, as in the locked path's ``facts_current`` check. Under READ COMMITTED an
    update that waited for the row lock re-checks the condition against the newest
    version, so a concurrent writer makes the write do nothing. ``None`` (that, an order
    id already known, or any rare case) sends the caller to the locked path, which decides
    it from scratch: nothing was written.

    With ``remembered`` (``OrderFactsCache``), the facts the member's previous order left
    are used instead of the first statement: one statement in all. If the write finds the
    row at another version, the facts are read and the write tried once more; if they
    already show a rare case (debt, a referral), the locked path at once.
    ``slot_held``: the caller holds a pool slot for the whole checkout (``pool_slot``).
    """
    now = now or datetime.now(UTC)
    rules = cache.cached(data.occurred_at)
    if rules is None:
        return None
    ladder, campaigns = rules
    window_start = tiers.growth_window_start(ladder, data.occurred_at)
    known = remembered.get(data.member_id) if remembered is not None else None

    def plan_for(member: OrderMember) -> OrderPlan:
        return plan_order(settings, data, ladder, campaigns, member, now)

    written = None
    try:
        written = await _write_optimistically(
            engine, data.member_id, plan_for, window_start, known, slot_held
        )
    except _LockedPathNeeded:
        pass
    if remembered is None:
        return None if written is None else written[0].response
    if written is None:  # the locked path will write a new version: nothing to remember
        remembered.forget(data.member_id)
        return None
    plan, member, row = written
    points = plan.earning.points
    locked = member.locked
    remembered.remember(
        data.member_id,
        RememberedFacts(
            ledger.LockedBalance(
                data.member_id,
                plan.response.balance.available,
                plan.response.balance.pending,
                0,
                locked.lifetime_earned + points,
                locked.growth_value + plan.earning.growth,
                plan.response.tier,  # the new tier, if the order moved the member up
            ),
            row["row_version"],
            window_start,
            member.window_sum + plan.earning.growth,
            int(row["entry_id"]) if points > 0 else member.latest_entry_id,
            time.monotonic(),
        ),
    )
    return plan.response


async def _write_optimistically(
    engine: AsyncEngine,
    member_id: str,
    plan_for: Callable[[OrderMember], OrderPlan],
    window_start: datetime,
    known: RememberedFacts | None,
    slot_held: bool,
) -> tuple[OrderPlan, OrderMember, Any] | None:
    """The write with remembered facts, else (or if refused) with facts read now;
    ``plan_for``: the order's plan from a member's facts (``plan_order``)."""
    written = None
    async with DriverAutocommit(engine, slot_held=slot_held) as conn:
        if known is not None:  # one statement, if what the last checkout left still holds
            member = OrderMember(
                known.locked,
                max(0, known.window_sum),
                True,
                None,
                window_start,
                known.window_sum,
                known.latest_entry_id,
            )
            written = await _write_if_unchanged(
                conn, plan_for, member, known.version, window_moved_from=known.window_start
            )
        if written is None:  # read the facts, then the same write
            read = await read_for_order(conn, member_id, window_start)
            if read is not None:
                member, version = read
                written = await _write_if_unchanged(conn, plan_for, member, version)
    return written


async def _write_if_unchanged(
    conn: asyncpg.Connection,
    plan_for: Callable[[OrderMember], OrderPlan],
    member: OrderMember,
    version: str,
    *,
    window_moved_from: datetime | None = None,
) -> tuple[OrderPlan, OrderMember, Any] | None:
    """Plan the order from ``member`` and write it if the balance row is at ``version``:
    (the plan, the facts it was planned from, the written row).

    None: the write was refused (another version, or a growth entry between
    ``window_moved_from`` and this order's window start): nothing was written, and the
    facts may be read again. ``_LockedPathNeeded``: a rare case (debt, a referral: reading
    the facts again would not change that) or an order id already known; nothing was
    written either. An order that moves the member up the ladder writes the new tier and
    ``tier.changed`` in the same statement (as on the locked path).
    """
    if member.locked.debt > 0 or (not member.has_orders and member.referred_by is not None):
        raise _LockedPathNeeded
    plan = plan_for(member)
    moved_from = window_moved_from or member.window_start
    params = {
        **plan.params,
        "p_row_version": version,
        "p_window_from": min(moved_from, member.window_start),
        "p_window_to": max(moved_from, member.window_start),
    }
    try:
        row = await plan.statement(if_version=True).fetchrow(conn, params)
    except asyncpg.UniqueViolationError:
        # the order id is known (a retry, or another member's order): the statement was
        # undone as a whole; the locked path replays the stored answer or refuses it
        raise _LockedPathNeeded from None
    return None if row is None else (plan, member, row)


def _upgrade_params(upgrade: Upgrade) -> dict[str, Any]:
    """The upgrade's parameters: the new tier, and ``tier.changed`` as the third event
    (the CloudEvent every other tier change publishes: ``points.tiers.upgrades``)."""
    event_row = outbox_row(POINTS_EVENTS, upgrade.event())
    return {"p_new_tier": upgrade.to_tier, **_event_params(2, event_row)}


class _LockedPathNeeded(Exception):
    """The optimistic path leaves this order to the locked path; nothing was written."""


async def record_order(
    session: AsyncSession,
    settings: PointsSettings,
    data: OrderIn,
    *,
    now: datetime | None = None,
    cache: RulesCache | None = None,
) -> OrderOut:
    out, _ = await record_order_once(session, settings, data, now=now, cache=cache)
    return out


async def record_order_once(
    session: AsyncSession,
    settings: PointsSettings,
    data: OrderIn,
    *,
    now: datetime | None = None,
    cache: RulesCache | None = None,
) -> tuple[OrderOut, bool]:
    """Record the order; returns (answer, created) — created is False for a replay."""
    now = now or datetime.now(UTC)
    ladder, campaigns = await earning_data(session, cache, data.occurred_at, now)
    member = await lock_for_order(
        session, data.member_id, tiers.growth_window_start(ladder, data.occurred_at)
    )
    if member is None:
        raise UnknownMember(
            f"Member {data.member_id!r} is not enrolled; enrol it with POST /v1/members first",
            member_id=data.member_id,
            errors=[{"field": "body.member_id", "message": "member is not enrolled"}],
        )
    plan = plan_order(settings, data, ladder, campaigns, member, now)
    row = await plan.statement().fetchrow(await driver_connection(session), plan.params)
    if row is None:  # the order id is known: replay its answer (or 409 for another body)
        return await _replay(session, data, plan.fingerprint), False
    lot_id = None if plan.earning.points <= 0 else int(row["id"])
    locked = member.locked
    response = plan.response

    if lot_id is not None and not plan.pending and locked.debt > 0:
        # the member owes points from an earlier refund: this credit repays it first
        posting = ledger.Posting(session, locked, "order", data.order_id, data.occurred_at)
        await posting.settle_debt(key=earn_key(data.order_id))
        await posting.finish()

    if not member.has_orders and member.referred_by is not None:
        from points.referrals.service import credit_referral

        # the bonus may move the new member up: then the answer (and the stored one) says so
        response = await credit_referral(
            session, settings, ladder, data, member.referred_by, now, response
        )

    return response, True


# JSON parameters of the write: serialised by plan_order (orjson), sent as text, cast by
# Postgres. Through SQLAlchemy's JSON type each cost three Python calls at bind time (its
# processor, the serialiser, the asyncpg codec's encoder), seven times per order.
_EVENT_JSON = frozenset({"payload", "headers"})


def _event_params(index: int, event_row: dict[str, Any]) -> dict[str, Any]:
    """An outbox row as the write's ``p_ev{index}_*`` parameters (JSON columns as text)."""
    return {
        f"p_ev{index}_{col}": jsontext.dumps(value) if col in _EVENT_JSON else value
        for col, value in event_row.items()
    }


def _json_text(name: str) -> Any:
    return cast_(bindparam(name, type_=Text), JSONB)


def _order_statements(*, if_version: bool = False, upgrade: bool = False) -> tuple[Any, Any]:
    """Built once: (order without points, order + lot + entry + balance) as data-modifying CTEs.

    Every value is a bound parameter, so a request only binds and executes them.

    The locked path's variant (the balance row already locked by the transaction) inserts
    the order ``ON CONFLICT DO NOTHING`` and writes the rest only if the order was new.
    ``if_version``: the optimistic path's variant, one statement with no transaction
    block (``record_order_optimistic``). It writes the balance row first, and only if the
    row is still at the version ``p_row_version`` and no entry that counts toward growth
    lies in ``[p_window_from, p_window_to)``; everything else is written from that
    update's row. The update takes the row lock: under READ COMMITTED, one that waited
    for a concurrent writer re-checks its condition against the newest version, which
    carries another ``xmin``, and writes nothing. An order id already known makes the
    order insert fail (no ``ON CONFLICT``), which undoes the whole statement; the caller
    takes the locked path, which replays or refuses it. (Before, the row was locked by a
    ``SELECT ... FOR UPDATE`` and then updated: a second pass over the row, a lock record
    in the WAL and a larger plan to start on every checkout.)

    ``upgrade``: the order also moves the member up the ladder. The member's tier
    (``p_new_tier``) and a third event (``tier.changed``, ``p_ev2_*``) are written only if
    the balance row was (the order is new; on the optimistic path, the version held), and
    after it: the balance row is locked first and the member row after it, the one lock
    order every writer of a member's tier keeps.
    """
    at = DateTime(timezone=True)
    # the balance row's version after the write (the member facts cache keeps it)
    row_version = cast_(literal_column("balances.xmin", Text), Text).label("row_version")
    member_id = bindparam("p_member_id", type_=String)
    order_values = {
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
    order_params = [
        _json_text(param)
        if isinstance(orders.c[column].type, JSONB)
        else bindparam(param, type_=orders.c[column].type)
        for column, param in order_values.items()
    ]
    balance_credit = {
        "available": balances.c.available + bindparam("p_d_available", type_=BigInteger),
        "pending": balances.c.pending + bindparam("p_d_pending", type_=BigInteger),
        "lifetime_earned": balances.c.lifetime_earned + bindparam("p_points", type_=BigInteger),
        "growth_value": balances.c.growth_value + bindparam("p_growth", type_=BigInteger),
        # the window as the lock read it; this order's entry counts as written since
        "growth_cache_start": bindparam("p_window_start", type_=at),
        "growth_cache_sum": bindparam("p_window_sum", type_=BigInteger),
        "growth_cache_entry_id": bindparam("p_cache_entry_id", type_=BigInteger),
    }
    # an order that earns nothing still writes the member's balance row: the next
    # checkout's version check relies on it to know that its facts may be out of date
    balance_touch = {"updated_at": func.now()}

    def versioned_balance(values: dict[str, Any], name: str) -> Any:
        """The balance row written if still at ``p_row_version`` (optimistic path)."""
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
            .returning(balances.c.member_id, row_version)
            .cte(name)
        )

    def new_order(after: Any | None) -> Any:
        if after is None:  # the locked path: a known order id writes nothing
            insert_order = insert(orders).values(dict(zip(order_values, order_params, strict=True)))
            insert_order = insert_order.on_conflict_do_nothing(index_elements=[orders.c.order_id])
        else:
            insert_order = insert(orders).from_select(
                list(order_values), select(*order_params).select_from(after)
            )
        return insert_order.returning(orders.c.order_id).cte("new_order")

    def events_of(order_cte: Any, count: int) -> Any:
        columns = ["event_id", "topic", "key", "event_type", "payload", "headers"]
        rows = [
            select(
                *[
                    _json_text(f"p_ev{i}_{col}")
                    if col in _EVENT_JSON
                    else bindparam(f"p_ev{i}_{col}", type_=Text)
                    for col in columns
                ]
            ).select_from(order_cte)
            for i in range(count)
        ]
        return insert(outbox).from_select(columns, union_all(*rows)).cte("new_events")

    def balance_after(order_cte: Any, values: dict[str, Any], name: str) -> Any:
        """The locked path's balance write, if the order was new."""
        return (
            update(balances)
            .where(balances.c.member_id == member_id, exists(select(order_cte.c.order_id)))
            .values(values)
            .returning(balances.c.member_id, row_version)
            .cte(name)
        )

    def order_and_balance(values: dict[str, Any], name: str) -> tuple[Any, Any]:
        """The order and the balance write, in the variant's order (see above)."""
        if if_version:
            balance_cte = versioned_balance(values, name)
            return new_order(balance_cte), balance_cte
        order_cte = new_order(None)
        return order_cte, balance_after(order_cte, values, name)

    def with_upgrade(statement: Any, balance_cte: Any) -> Any:
        """The member's new tier, if the balance row was written (``upgrade`` above)."""
        if not upgrade:
            return statement
        new_tier = (
            update(members_table)
            .where(members_table.c.member_id == member_id, exists(select(balance_cte.c.member_id)))
            .values(tier=bindparam("p_new_tier", type_=String))
            .returning(members_table.c.member_id)
            .cte("new_tier")
        )
        return statement.add_cte(new_tier)

    event_count = 3 if upgrade else 2
    order_cte, touch_cte = order_and_balance(balance_touch, "touched_balance")
    without_points = with_upgrade(
        select(order_cte.c.order_id, touch_cte.c.row_version)
        .select_from(order_cte.outerjoin(touch_cte, true()))
        .add_cte(events_of(order_cte, event_count)),
        touch_cte,
    )

    # with points: order, lot, entry, balance
    order_cte, balance_cte = order_and_balance(balance_credit, "new_balance")
    lot_cte = (
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
                member_id,
                bindparam("p_points", type_=BigInteger),
                bindparam("p_points", type_=BigInteger),
                bindparam("p_lot_status", type_=String),
                literal_column("'order'", String),
                order_cte.c.order_id,
                bindparam("p_occurred_at", type_=at),
                bindparam("p_available_at", type_=at),
                bindparam("p_expires_at", type_=at),
            ),
        )
        .returning(lots.c.id, lots.c.source_id)
        .cte("new_lot")
    )
    entry_cte = (
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
                member_id,
                bindparam("p_entry_type", type_=String),
                bindparam("p_d_available", type_=BigInteger),
                bindparam("p_d_pending", type_=BigInteger),
                lot_cte.c.id,
                literal_column("'purchase'", Text),
                literal_column("'order'", String),
                lot_cte.c.source_id,
                bindparam("p_earn_key", type_=Text),
                bindparam("p_occurred_at", type_=at),
                bindparam("p_growth", type_=BigInteger),
                _json_text("p_details"),
            ),
        )
        .returning(entries.c.id)
        .cte("new_entry")
    )
    with_points = with_upgrade(
        select(
            order_cte.c.order_id,
            lot_cte.c.id,
            entry_cte.c.id.label("entry_id"),
            balance_cte.c.row_version,
        )
        .select_from(
            order_cte.outerjoin(lot_cte, true())
            .outerjoin(entry_cte, true())
            .outerjoin(balance_cte, true())
        )
        .add_cte(events_of(order_cte, event_count)),
        balance_cte,
    )
    return without_points, with_points


# (order only, order with its credit) by (optimistic path, upgrade): ``OrderPlan.statement``
_WRITES: dict[tuple[bool, bool], tuple[CompiledStatement, CompiledStatement]] = {
    (if_version, upgrade): (CompiledStatement(only), CompiledStatement(credit))
    for if_version in (False, True)
    for upgrade in (False, True)
    for only, credit in [_order_statements(if_version=if_version, upgrade=upgrade)]
}


async def _replay(session: AsyncSession, data: OrderIn, fingerprint: str) -> OrderOut:
    existing = (
        await session.execute(
            select(orders.c.request_hash, orders.c.response).where(
                orders.c.order_id == data.order_id
            )
        )
    ).one()
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(
            f"Order {data.order_id!r} was already recorded with a different body",
            order_id=data.order_id,
        )
    return OrderOut.model_validate(existing.response)
