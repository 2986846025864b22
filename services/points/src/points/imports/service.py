"""History import: many orders in one transaction (``POST /v1/orders/batch``, the CSV import).

The meaning is the checkout's, order by order: each order as of its own ``occurred_at``
(the tier held then and the upgrades along the way, the campaigns running then, the
growth window ending then, the pending window and the lot's expiry from then),
idempotent by order id (a known id with the same body is a duplicate, with another body
a 409 problem for its row), a bad row failing alone with its index and field.

The work is set-based (docs/imports.md): a few statements read what the batch needs (the
order ids already known, the members, under their balance-row locks, with the ledger
entries that count toward growth), then each member's orders are planned in Python in
time order with the checkout's own ``plan_order``, from the member's facts as the orders
before moved them; the writes are one statement per table for the whole batch.

Two rare cases go the one-by-one way (``record_order_once``, a savepoint per order): a
member in debt (the repayment entries) and a referred member's first order (the referral
credits both members), with that member's referrer.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared import erasure, jsontext
from loyalty_shared.db import driver_connection
from loyalty_shared.deadlocks import retry_on_deadlock
from loyalty_shared.outbox import outbox_row
from loyalty_shared.problems import ProblemError
from loyalty_shared.topics import POINTS_EVENTS
from points import events
from points.campaigns.calculator import Campaign, is_running
from points.campaigns.service import campaigns_running_between
from points.checkout.facts import OrderMember
from points.checkout.plan import OrderPlan, plan_order, request_fingerprint
from points.checkout.record import record_order_once
from points.client_times import TimeBounds
from points.errors import IdempotencyConflict, UnknownMember
from points.imports import repository as repo
from points.imports.problems import (
    row_problem,
    unknown_member_problem,
    validation_problem,
)
from points.imports.refunds import parse_refunds, record_refunds
from points.imports.schemas import RefundRowIn
from points.ledger import service as ledger
from points.members.service import new_referral_code
from points.orders.schemas import OrderIn
from points.rules_cache import RulesCache
from points.settings import PointsSettings
from points.tiers import service as tiers
from points.tiers.schemas import TierLadder

Row = tuple[int, OrderIn]  # (index in the request, the order)

# a concurrent import of the same new order id, committed between the read of known ids
# and the insert: the batch is done again (it then finds the id known)
_UNIQUE_ATTEMPTS = 3


@dataclass
class BatchResult:
    created: int = 0
    duplicates: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    refunded: int = 0
    refunds_failed: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, index: int, problem: dict[str, Any]) -> None:
        self.failed.append({"index": index, "problem": problem})

    def add(self, other: BatchResult) -> None:
        self.created += other.created
        self.duplicates += other.duplicates
        self.failed = sorted(self.failed + other.failed, key=lambda f: f["index"])
        self.refunded += other.refunded
        self.refunds_failed = sorted(
            self.refunds_failed + other.refunds_failed, key=lambda f: f["index"]
        )


def parse_rows(rows: list[Any], result: BatchResult) -> list[Row]:
    """Validate every row alone; invalid ones go to ``result.failed``."""
    parsed: list[Row] = []
    for index, row in enumerate(rows):
        try:
            parsed.append((index, OrderIn.model_validate(row)))
        except ValidationError as exc:
            result.fail(index, validation_problem(index, exc))
    return parsed


async def import_orders(
    session: AsyncSession,
    settings: PointsSettings,
    rows: list[Any],
    *,
    enrol_missing: bool,
    refund_rows: list[Any] | None = None,
    cache: RulesCache | None = None,
    now: datetime | None = None,
    result: BatchResult | None = None,
) -> BatchResult:
    """Import ``rows`` (orders as for ``POST /v1/orders``) and then ``refund_rows``
    (``RefundRowIn``) in the caller's transaction."""
    result = result or BatchResult()
    now = now or datetime.now(UTC)
    refund_list = parse_refunds(refund_rows or [], result.refunds_failed)
    bounds = TimeBounds.of(settings)
    parsed: list[Row] = []
    for index, data in sorted(parse_rows(rows, result), key=lambda r: (r[1].occurred_at, r[0])):
        try:
            bounds.check_not_ahead(data.occurred_at, now)
        except ProblemError as exc:
            result.fail(index, row_problem(index, exc))
            continue
        parsed.append((index, data))
    if not parsed and not refund_list:
        result.add(BatchResult())
        return result
    batch = _Batch(session, settings, parsed, enrol_missing, cache, now, refund_list)
    for attempt in range(1, _UNIQUE_ATTEMPTS + 1):
        try:
            # a lost deadlock (a consumer batch crediting the same members in another
            # order, an enrolment of the same new member): the whole batch again
            recorded = await retry_on_deadlock(session, batch.run)
            break
        except asyncpg.UniqueViolationError:
            if attempt == _UNIQUE_ATTEMPTS:
                raise
    result.add(recorded)
    return result


class _Batch:
    """One attempt at the batch's writes (``run`` may be called again after a rollback)."""

    def __init__(
        self,
        session: AsyncSession,
        settings: PointsSettings,
        rows: list[Row],
        enrol_missing: bool,
        cache: RulesCache | None,
        now: datetime,
        refund_rows: list[tuple[int, RefundRowIn]],
    ) -> None:
        self.refund_rows = refund_rows
        self.session = session
        self.settings = settings
        self.rows = rows
        self.enrol_missing = enrol_missing
        self.cache = cache
        self.now = now

    async def _ladder(self) -> TierLadder:
        if self.cache is not None:
            return await self.cache.ladder(self.session, self.now)
        return await tiers.load_ladder(self.session)

    async def run(self) -> BatchResult:
        result = BatchResult()
        if self.rows:
            await self._orders(result)
        result.refunded = await record_refunds(
            self.session, self.settings, self.refund_rows, self.now, result.refunds_failed
        )
        return result

    async def _orders(self, result: BatchResult) -> None:
        conn = await driver_connection(self.session)
        ladder = await self._ladder()
        known = await repo.known_orders(conn, [d.order_id for _, d in self.rows])
        writes = repo.Writes.empty()
        member_ids = {d.member_id for _, d in self.rows}
        erased: set[str] = set()
        if self.enrol_missing:
            erased = await erasure.erased_among(
                self.session, self.settings.erasure_key(), member_ids
            )
            wanted = {d.member_id for _, d in self.rows if d.order_id not in known} - erased
            await self._enrol(conn, ladder, wanted, writes)
        since = min(tiers.growth_window_start(ladder, d.occurred_at) for _, d in self.rows)
        facts = await repo.lock_and_read(conn, sorted(member_ids - erased), since)
        rows = self._reachable(result, erased, facts)
        slow = _one_by_one_members(facts, {d.member_id for _, d in rows})
        fast = [(i, d) for i, d in rows if d.member_id not in slow]
        planner = _Planner(self.settings, ladder, facts, known, self.now, writes, result)
        await planner.load_campaigns(self.session, fast)
        for index, data in fast:
            planner.plan(index, data)
        planner.finish()
        await repo.write(conn, writes)
        await self._one_by_one([(i, d) for i, d in rows if d.member_id in slow], result)

    def _reachable(
        self, result: BatchResult, erased: set[str], facts: dict[str, repo.MemberFacts]
    ) -> list[Row]:
        """The rows whose member is there to record them (the others fail, each alone)."""
        rows: list[Row] = []
        for index, data in self.rows:
            if data.member_id in erased:
                result.fail(index, row_problem(index, _erased()))
            elif data.member_id not in facts:
                result.fail(index, unknown_member_problem(index, _unknown(data.member_id)))
            else:
                rows.append((index, data))
        return rows

    async def _enrol(
        self, conn: Any, ladder: TierLadder, wanted: set[str], writes: repo.Writes
    ) -> None:
        """Enrol the members the batch names and that are not enrolled, as ``POST
        /v1/members`` would (entry tier, first evaluation, ``member.enrolled``), each as of
        its first order in the batch: a history's member was a member then, and a profile
        fed from the events must not date its entry tier after the tier changes of its
        history (newest wins)."""
        missing = sorted(wanted - await repo.existing_members(conn, sorted(wanted)))
        if not missing:
            return
        since: dict[str, datetime] = {}
        for _, data in self.rows:
            since[data.member_id] = min(since.get(data.member_id, self.now), data.occurred_at)
        timezone = self.settings.default_timezone
        tier = tiers.entry_tier(ladder).code
        evaluation = tiers.next_evaluation_at(ladder, self.now, self.now)
        new = [
            repo.NewMember(m, timezone, new_referral_code(), tier, evaluation, since[m])
            for m in missing
        ]
        enrolled_at = {n.member_id: n.enrolled_at for n in new}
        for member_id in await repo.enrol_members(conn, new):
            event = events.points_event(
                events.MEMBER_ENROLLED,
                member_id,
                {
                    "member_id": member_id,
                    "tier": tier,
                    "enrolled_at": enrolled_at[member_id].isoformat(),
                    "timezone": timezone,
                },
                time=self.now,
            )
            row = outbox_row(POINTS_EVENTS, event)
            writes.events.add(
                {
                    **row,
                    "payload": jsontext.dumps(row["payload"]),
                    "headers": jsontext.dumps(row["headers"]),
                }
            )

    async def _one_by_one(self, rows: list[Row], result: BatchResult) -> None:
        """The rare members' orders, each through the checkout's locked path in a savepoint."""
        for index, data in rows:
            try:
                async with self.session.begin_nested():
                    _, created = await record_order_once(
                        self.session, self.settings, data, now=self.now, cache=self.cache
                    )
            except UnknownMember as exc:
                result.fail(index, unknown_member_problem(index, exc))
                continue
            except IdempotencyConflict as exc:
                result.fail(index, row_problem(index, exc, field="order_id"))
                continue
            except ProblemError as exc:
                result.fail(index, row_problem(index, exc))
                continue
            if created:
                result.created += 1
            else:
                result.duplicates += 1


def _erased() -> erasure.MemberErased:
    return erasure.MemberErased(
        "This member was erased; nothing more is recorded about them",
        errors=[
            {"field": "body.member_id", "message": "member was erased", "type": "member_erased"}
        ],
    )


def _unknown(member_id: str) -> UnknownMember:
    return UnknownMember(
        f"Member {member_id!r} is not enrolled; enrol it with POST /v1/members first",
        member_id=member_id,
        errors=[{"field": "body.member_id", "message": "member is not enrolled"}],
    )


def _one_by_one_members(facts: dict[str, repo.MemberFacts], named: set[str]) -> set[str]:
    """Members whose orders take the one-by-one path: in debt, or referred and without an
    order yet (the first order credits the referrer too), and the referrers of the latter
    that the batch names (their books move with the referral credit)."""
    slow: set[str] = set()
    for member_id in named:
        f = facts[member_id]
        if f.debt > 0:
            slow.add(member_id)
        elif f.referred_by is not None and not f.has_orders:
            slow.add(member_id)
            if f.referred_by in named:
                slow.add(f.referred_by)
    return slow


class _Planner:
    """Plans the batch's orders in time order and gathers what they write."""

    def __init__(
        self,
        settings: PointsSettings,
        ladder: TierLadder,
        facts: dict[str, repo.MemberFacts],
        known: dict[str, str],
        now: datetime,
        writes: repo.Writes,
        result: BatchResult,
    ) -> None:
        self.settings = settings
        self.ladder = ladder
        self.facts = facts
        self.known = dict(known)  # order id -> fingerprint; the batch's own added as planned
        self.now = now
        self.writes = writes
        self.result = result
        self.campaigns: list[Campaign] = []
        self.moved: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.start_tier = {m: f.tier for m, f in facts.items()}

    async def load_campaigns(self, session: AsyncSession, rows: list[Row]) -> None:
        if rows:
            self.campaigns = await campaigns_running_between(
                session, rows[0][1].occurred_at, rows[-1][1].occurred_at
            )

    def plan(self, index: int, data: OrderIn) -> None:
        prior = self.known.get(data.order_id)
        if prior is not None:
            if prior == request_fingerprint(data):
                self.result.duplicates += 1
            else:
                conflict = IdempotencyConflict(
                    f"Order {data.order_id!r} was already recorded with a different body",
                    order_id=data.order_id,
                )
                self.result.fail(index, row_problem(index, conflict, field="order_id"))
            return
        f = self.facts[data.member_id]
        at = data.occurred_at
        window_start = tiers.growth_window_start(self.ladder, at)
        window_sum = sum(delta for when, delta in f.growth if when >= window_start)
        member = OrderMember(
            ledger.LockedBalance(
                f.member_id,
                f.available,
                f.pending,
                f.debt,
                f.lifetime_earned,
                f.growth_value,
                f.tier,
            ),
            max(0, window_sum),
            f.has_orders,
            f.referred_by,
            window_start,
            window_sum,
            0,
        )
        campaigns = [c for c in self.campaigns if is_running(c, at)]
        plan = plan_order(self.settings, data, self.ladder, campaigns, member, self.now)
        self.known[data.order_id] = plan.fingerprint
        self._gather(plan)
        self._move(f, plan)
        self.result.created += 1

    def _gather(self, plan: OrderPlan) -> None:
        p = plan.params
        self.writes.orders.add(
            {
                "order_id": p["p_order_id"],
                "member_id": p["p_member_id"],
                "amount": p["p_amount"],
                "currency": p["p_currency"],
                "discount_amount": p["p_discount_amount"],
                "coupon_used": p["p_coupon_used"],
                "channel": p["p_channel"],
                "items": p["p_items"],
                "occurred_at": p["p_occurred_at"],
                "points_earned": p["p_points"],
                "growth_points": p["p_growth"],
                "breakdown": p["p_details"],
                "request_hash": p["p_request_hash"],
                "response": p["p_response"],
            }
        )
        if plan.earning.points > 0:
            self.writes.credits.add(
                {
                    "member_id": p["p_member_id"],
                    "points": p["p_points"],
                    "status": p["p_lot_status"],
                    "source_id": p["p_order_id"],
                    "earned_at": p["p_occurred_at"],
                    "available_at": p["p_available_at"],
                    "expires_at": p["p_expires_at"],
                    "entry_type": p["p_entry_type"],
                    "d_available": p["p_d_available"],
                    "d_pending": p["p_d_pending"],
                    "earn_key": p["p_earn_key"],
                    "growth": p["p_growth"],
                    "details": p["p_details"],
                }
            )
        for i in range(3 if plan.upgrade is not None else 2):
            self.writes.events.add({c: p[f"p_ev{i}_{c}"] for c in repo.EVENT_COLUMNS})

    def _move(self, f: repo.MemberFacts, plan: OrderPlan) -> None:
        """The member's books after the order, as the next order of the batch reads them."""
        points, growth = plan.earning.points, plan.earning.growth
        moved = self.moved[f.member_id]
        if points > 0:
            d_available, d_pending = (0, points) if plan.pending else (points, 0)
            f.available += d_available
            f.pending += d_pending
            f.lifetime_earned += points
            f.growth_value += growth
            moved[0] += d_available
            moved[1] += d_pending
            moved[2] += points
            moved[3] += growth
            if growth != 0:
                f.growth.append((plan.params["p_occurred_at"], growth))
        f.has_orders = True
        if plan.upgrade is not None:
            f.tier = plan.upgrade.to_tier

    def finish(self) -> None:
        """The balance and tier writes, one row per member the batch moved."""
        for member_id, (d_available, d_pending, d_earned, d_growth) in sorted(self.moved.items()):
            self.writes.balances.add(
                {
                    "member_id": member_id,
                    "d_available": d_available,
                    "d_pending": d_pending,
                    "d_earned": d_earned,
                    "d_growth": d_growth,
                }
            )
            tier = self.facts[member_id].tier
            if tier != self.start_tier[member_id]:
                self.writes.tiers.add({"member_id": member_id, "tier": tier})
