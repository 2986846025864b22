"""Recording a completed order: points earned once per order id (every checkout's hot path).

``Checkout.record`` (``record_checkout``) owns the whole fallback order
(docs/performance.md, "What a checkout does"); each step answers ``Written`` or
``NeedsLock`` (nothing written, the next step decides):

1. **remembered facts**: the facts the member's last checkout left (``OrderFactsCache``),
   one statement with no transaction block, written only if the balance row is still at
   the version they were read with;
2. **read facts**: read them unlocked with the row's version, then the same write;
3. **the locked path** (``record_order``): lock the balance row, read the facts, one
   statement of data-modifying CTEs (order, lot, entry, balance, outbox events); a rare
   case (a debt to repay, a referral to credit) and a known order id (replay or 409) are
   decided here;
4. **batch**: checkouts of one member that arrive while one is being recorded queue, and
   are recorded together (``KeyedBatches``): one transaction, the balance row locked
   once, each order as the locked path records it, one ``COMMIT``;
5. **one by one**: a batch is all or nothing; if any of its orders fails it is rolled
   back and each order is recorded on its own (steps 1-3), so an order's answer never
   depends on the others in its batch.

The tier ladder and the running campaigns come from the in-process ``RulesCache`` (a few
seconds old at most); without them in the cache, the locked path reads them. An order that
moves the member up the ladder writes the member's tier and ``tier.changed`` in the same
statement, on either path. Points: ``floor(base x tier multiplier) + campaign bonus``
(``points.checkout.earning``).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import status
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from loyalty_shared.db import HotTransaction, driver_connection, pool_slot
from loyalty_shared.hotpath.keyed_batches import KeyedBatches
from loyalty_shared.hotpath.pool import DriverAutocommit
from loyalty_shared.idempotency import IdempotencyGuard
from loyalty_shared.keyed_locks import KeyedLocks
from loyalty_shared.replays import stored_answer
from points.campaigns.calculator import Campaign
from points.checkout.facts import OrderMember, lock_for_order, read_for_order
from points.checkout.facts_cache import OrderFactsCache, RememberedFacts
from points.checkout.plan import OrderPlan, earn_key, plan_order
from points.errors import IdempotencyConflict, UnknownMember
from points.ledger import service as ledger
from points.orders.models import orders
from points.orders.schemas import OrderIn, OrderOut
from points.rules_cache import RulesCache, earning_data
from points.settings import PointsSettings
from points.tiers import service as tiers
from points.tiers.schemas import TierLadderIn


@dataclass(frozen=True, slots=True)
class Written:
    """The order is recorded: its answer."""

    out: OrderOut


@dataclass(frozen=True, slots=True)
class NeedsLock:
    """Nothing was written: the locked path decides the order (``why`` says which case)."""

    why: str


@dataclass(frozen=True, slots=True)
class _Stale:
    """The write found the balance row at another version: nothing written, read again."""


@dataclass(frozen=True, slots=True)
class _Wrote:
    plan: OrderPlan
    member: OrderMember  # the facts it was planned from
    row: Any  # the written row (``row_version``, ``entry_id``)


async def record_order(
    session: AsyncSession,
    settings: PointsSettings,
    data: OrderIn,
    *,
    now: datetime | None = None,
    cache: RulesCache | None = None,
) -> OrderOut:
    """The locked path, in the caller's transaction (a replay answers as it did)."""
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
    response = plan.response
    if plan.earning.points > 0 and not plan.pending and member.locked.debt > 0:
        # the member owes points from an earlier refund: this credit repays it first
        posting = ledger.Posting(session, member.locked, "order", data.order_id, data.occurred_at)
        await posting.settle_debt(key=earn_key(data.order_id))
        await posting.finish()
    if not member.has_orders and member.referred_by is not None:
        from points.referrals.service import credit_referral

        # the bonus may move the new member up: then the answer (and the stored one) says so
        response = await credit_referral(
            session, settings, ladder, data, member.referred_by, now, response
        )
    return response, True


async def _replay(session: AsyncSession, data: OrderIn, fingerprint: str) -> OrderOut:
    """The stored answer for an order id the write found known (409 for another body)."""
    answer = await stored_answer(
        session,
        orders.c.order_id == data.order_id,
        orders,
        fingerprint,
        OrderOut,
        lambda: IdempotencyConflict(
            f"Order {data.order_id!r} was already recorded with a different body",
            order_id=data.order_id,
        ),
    )
    assert answer is not None  # the write did nothing because the order row is there
    return answer


@dataclass(frozen=True)
class _Attempt:
    """One order's optimistic attempt: what every write of it is planned from."""

    settings: PointsSettings
    order: OrderIn
    ladder: TierLadderIn
    campaigns: list[Campaign]
    now: datetime
    window_start: datetime

    def plan(self, member: OrderMember) -> OrderPlan:
        return plan_order(self.settings, self.order, self.ladder, self.campaigns, member, self.now)


async def record_order_optimistic(
    engine: AsyncEngine,
    settings: PointsSettings,
    data: OrderIn,
    cache: RulesCache,
    *,
    remembered: OrderFactsCache | None = None,
    now: datetime | None = None,
    slot_held: bool = False,
) -> Written | NeedsLock:
    """Steps 1 and 2: a plain checkout with no transaction block and no lock held.

    The common checkout (a known, live member; no debt to repay, no referral to credit;
    rules in the cache; a tier upgrade included) needs no lock held across round trips.
    With ``remembered`` (``OrderFactsCache``), the facts the member's previous order left
    are tried first: one statement in all. Else (or if the write finds the row at another
    version) the facts are read with the version (``xmin``) of the balance row, and the
    write (order, lot, entry, balance, events; the new tier and ``tier.changed`` for an
    upgrade), one statement that Postgres commits by itself, happens only if it can update
    the balance row still at that version: every change to what an order reads about a
    member writes that row (``ledger.touch_balance``), so an unchanged version means the
    facts still hold, as in the locked path's ``facts_current`` check. Under READ
    COMMITTED an update that waited for the row lock re-checks the condition against the
    newest version, so a concurrent writer makes the write do nothing.

    ``NeedsLock``: that, an order id already known, or a rare case: nothing was written.
    ``slot_held``: the caller holds a pool slot for the whole checkout (``pool_slot``).
    """
    rules = cache.cached(data.occurred_at)
    if rules is None:
        return NeedsLock("rules not cached for the order's time")
    ladder, campaigns = rules
    window_start = tiers.growth_window_start(ladder, data.occurred_at)
    attempt = _Attempt(settings, data, ladder, campaigns, now or datetime.now(UTC), window_start)
    known = remembered.get(data.member_id) if remembered is not None else None
    if "driver_autocommit" in settings.hotpath_off:  # BEGIN and COMMIT around it instead
        async with HotTransaction(engine, slot_held=slot_held) as session:
            outcome = await _write_optimistically(await driver_connection(session), attempt, known)
    else:
        async with DriverAutocommit(engine, slot_held=slot_held) as conn:
            outcome = await _write_optimistically(conn, attempt, known)
    if isinstance(outcome, NeedsLock):
        if remembered is not None:  # the locked path writes a new version
            remembered.forget(data.member_id)
        return outcome
    if remembered is not None:
        remembered.remember(data.member_id, _facts_after(outcome, window_start))
    return Written(outcome.plan.response)


async def _write_optimistically(
    conn: asyncpg.Connection, attempt: _Attempt, known: RememberedFacts | None
) -> _Wrote | NeedsLock:
    """The write with remembered facts, else (or if stale) with facts read now."""
    if known is not None:  # one statement, if what the last checkout left still holds
        member = OrderMember(
            known.locked,
            max(0, known.window_sum),
            True,
            None,
            attempt.window_start,
            known.window_sum,
            known.latest_entry_id,
        )
        outcome = await _write_if_unchanged(
            conn, attempt, member, known.version, window_moved_from=known.window_start
        )
        if not isinstance(outcome, _Stale):
            return outcome
    read = await read_for_order(conn, attempt.order.member_id, attempt.window_start)
    if read is None:
        return NeedsLock("member unknown or erased")
    member, version = read
    outcome = await _write_if_unchanged(conn, attempt, member, version)
    return (
        NeedsLock("balance row changed since the read") if isinstance(outcome, _Stale) else outcome
    )


async def _write_if_unchanged(
    conn: asyncpg.Connection,
    attempt: _Attempt,
    member: OrderMember,
    version: str,
    *,
    window_moved_from: datetime | None = None,
) -> _Wrote | _Stale | NeedsLock:
    """Plan the order from ``member`` and write it if the balance row is at ``version``.

    ``_Stale``: another version, or a growth entry between ``window_moved_from`` and this
    order's window start; the facts may be read again. ``NeedsLock``: a rare case (reading
    the facts again would not change that) or an order id already known. Either way
    nothing was written.
    """
    if member.rare:
        return NeedsLock("a debt to repay or a referral to credit")
    plan = attempt.plan(member)
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
        return NeedsLock("order id already known")
    return _Stale() if row is None else _Wrote(plan, member, row)


def _facts_after(wrote: _Wrote, window_start: datetime) -> RememberedFacts:
    """What the next checkout of the member would read, as this write left it."""
    plan, member, row = wrote.plan, wrote.member, wrote.row
    points, locked = plan.earning.points, member.locked
    return RememberedFacts(
        ledger.LockedBalance(
            locked.member_id,
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
    )


class Checkout:
    """``POST /v1/orders`` from a parsed body to its answer: the one home of the fallback
    order (module docstring). ``engine``: the app's engine, once its lifespan made it."""

    def __init__(
        self,
        engine: Callable[[], AsyncEngine],
        settings: PointsSettings,
        rules: RulesCache,
        facts: OrderFactsCache,
        member_locks: KeyedLocks,
    ) -> None:
        self._engine = engine
        self.settings = settings
        self.rules = rules
        self.facts = facts
        self.member_locks = member_locks  # checkouts of one member take turns here
        # a burst for one member: batches (step 4)
        self.batches: KeyedBatches[str, OrderIn, OrderOut] = KeyedBatches(self.one, self.batch)
        self.batches.batching = "keyed_batches" not in settings.hotpath_off

    async def record(self, data: OrderIn) -> OrderOut:
        """Record a checkout without an Idempotency-Key (steps 1-5)."""
        return await self.batches.submit(data.member_id, data)

    async def one(self, data: OrderIn) -> OrderOut:
        """Steps 1-3 for one order. One pool slot for the whole checkout: one that the
        optimistic path leaves to the locked path does not queue for a connection again."""
        engine = self._engine()
        async with self.member_locks.hold(data.member_id), pool_slot(engine):
            outcome = await record_order_optimistic(
                engine, self.settings, data, self.rules, remembered=self.facts, slot_held=True
            )
            if isinstance(outcome, Written):
                return outcome.out
            async with HotTransaction(engine, slot_held=True) as session:
                return await record_order(session, self.settings, data, cache=self.rules)

    async def batch(self, bodies: list[OrderIn]) -> list[OrderOut | BaseException]:
        """Step 4, and step 5 if the batch fails as a whole."""
        member = bodies[0].member_id
        self.facts.forget(member)
        try:
            async with (
                self.member_locks.hold(member),
                HotTransaction(self._engine()) as session,
            ):
                return [
                    await record_order(session, self.settings, b, cache=self.rules) for b in bodies
                ]
        except Exception:  # rolled back: each on its own, with its own answer or error
            outcomes: list[OrderOut | BaseException] = []
            for b in bodies:
                try:
                    outcomes.append(await self.one(b))
                except Exception as error:
                    outcomes.append(error)
            return outcomes

    async def record_keyed(self, data: OrderIn, idempotency: IdempotencyGuard) -> Response:
        """A checkout with an Idempotency-Key: the locked path, the key's stored answer in
        the same transaction (the answer, or the one stored for the key)."""
        async with (
            self.member_locks.hold(data.member_id),
            HotTransaction(self._engine()) as session,
        ):

            async def produce() -> tuple[OrderOut, int]:
                out = await record_order(session, self.settings, data, cache=self.rules)
                return out, status.HTTP_201_CREATED

            return await idempotency.run(session, data, produce)


async def record_checkout(
    checkout: Checkout, data: OrderIn, idempotency: IdempotencyGuard
) -> OrderOut | Response:
    """The answer to ``POST /v1/orders``: the order's, or a stored Idempotency-Key answer."""
    if idempotency.key is None:
        return await checkout.record(data)
    return await checkout.record_keyed(data, idempotency)
