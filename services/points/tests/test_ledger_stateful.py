"""Random operation sequences against the real ledger (hypothesis stateful, real Postgres).

Orders (some inside the return window), replays, refunds (and their replays),
redemptions, cancels, manual adjustments, check-ins, the maturing/expiry jobs and clock
moves, in any order. After every step, for every member:

- cached balances = sums of the ledger entries (available, pending, debt,
  lifetime earned, growth value);
- the tier is the highest the growth value qualified for at any credit so far (each
  credit upgrades at once, as of its own time; nothing here downgrades);
- available + pending = sum of open lot remainders - debt; pending = pending lots;
- every lot's remainder = the sum of its entries, within 0..points (none overspent);
- while in debt no spendable lot is left (earnings repay the debt first);
- no key credited twice: one earn entry per order, refunds reverse exactly the
  proportional share, a replayed request writes nothing.

Profiles: HYPOTHESIS_PROFILE=ci (default, 60 sequences) or nightly (2,000, longer).
"""

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import DateTime, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from loyalty_shared.testing import Infra, migrated_database
from points.actions import flows
from points.actions.flows import AlreadyCheckedIn
from points.actions.schemas import CheckInIn
from points.adjustments import service as adjustments
from points.adjustments.schemas import AdjustmentIn
from points.checkout import record as orders
from points.errors import InsufficientPoints, PointsInDebt, RefundExceedsOrder
from points.ledger import service as ledger
from points.ledger.jobs import run_ledger_jobs
from points.ledger.models import balances
from points.members import service as members
from points.members.schemas import MemberIn
from points.orders.schemas import OrderIn
from points.reconciliation.schemas import LedgerReport
from points.reconciliation.service import verify_ledger
from points.redemptions import service as redemptions
from points.redemptions.schemas import RedemptionIn
from points.refunds import service as refunds
from points.refunds.schemas import RefundIn
from points.settings import PointsSettings
from points.testing import SERVICE_DIR
from points.tiers import service as tiers
from points.tiers.schemas import Tier, TierLadderIn

T = TypeVar("T")

PROFILES = {
    "ci": settings(
        # ~70 s on 2 cores since the ladder, check-ins and counted adjustments joined the
        # rules (200 took ~230 s of a suite that must stay well under 20 minutes); the
        # nightly profile runs 2,000 longer sequences
        max_examples=60,
        stateful_step_count=10,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ),
    "nightly": settings(
        max_examples=2000,
        stateful_step_count=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ),
}
PROFILE = PROFILES.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), PROFILES["ci"])

START = datetime(2016, 3, 1, 12, 0, tzinfo=UTC)

# Multiplier 1 on every tier, so an order earns exactly its base points whatever the tier
# (multipliers are tested in test_order_earning.py); purchases, check-ins and positive
# adjustments count toward growth value over a short window, so members move up and
# credits fall out of the window within a sequence.
LADDER = TierLadderIn(
    tiers=[
        Tier(code="regular", name="Regular", threshold=0),
        Tier(code="silver", name="Silver", threshold=300),
        Tier(code="gold", name="Gold", threshold=800),
        Tier(code="diamond", name="Diamond", threshold=1500),
    ],
    rolling_window_days=120,
    growth_point_types=["purchase", "action", "adjustment"],
)

INVARIANTS_SQL = text(
    """
    WITH e AS (
        SELECT member_id,
               sum(points) AS available,
               sum(pending_delta) AS pending,
               sum(debt_delta) AS debt
        FROM ledger_entries WHERE member_id = ANY(:members) GROUP BY member_id
    ), l AS (
        SELECT member_id,
               sum(remaining) FILTER (WHERE status IN ('pending', 'available')) AS open,
               sum(remaining) FILTER (WHERE status = 'pending') AS pending,
               sum(remaining) FILTER (WHERE status = 'available') AS spendable,
               sum(remaining) FILTER (WHERE status = 'expired') AS expired_left
        FROM lots WHERE member_id = ANY(:members) GROUP BY member_id
    )
    SELECT b.member_id, b.available, b.pending, b.debt, b.lifetime_earned, b.growth_value,
           coalesce(e.available, 0) AS e_available, coalesce(e.pending, 0) AS e_pending,
           coalesce(e.debt, 0) AS e_debt,
           coalesce(l.open, 0) AS l_open, coalesce(l.pending, 0) AS l_pending,
           coalesce(l.spendable, 0) AS l_spendable, coalesce(l.expired_left, 0) AS l_expired
    FROM balances b LEFT JOIN e USING (member_id) LEFT JOIN l USING (member_id)
    WHERE b.member_id = ANY(:members)
    """
)

LOTS_SQL = text(
    """
    SELECT l.id, l.points, l.remaining,
           coalesce(sum(e.points + e.pending_delta + e.debt_delta), 0) AS from_entries
    FROM lots l LEFT JOIN ledger_entries e ON e.lot_id = l.id
    WHERE l.member_id = ANY(:members)
    GROUP BY l.id
    """
)

ENTRIES_WITHOUT_LOT_SQL = text(
    """
    SELECT count(*) FROM ledger_entries
    WHERE member_id = ANY(:members) AND lot_id IS NULL
      AND points + pending_delta + debt_delta <> 0
    """
)


ORDERS_SQL = text(
    """
    SELECT o.order_id,
           (SELECT count(*) FROM ledger_entries e WHERE e.source_type = 'order'
              AND e.source_id = o.order_id AND e.entry_type IN ('earn', 'pending')) AS credits,
           (SELECT coalesce(sum(points_reversed), 0) FROM refunds r
              WHERE r.order_id = o.order_id) AS reversed
    FROM orders o WHERE o.member_id = ANY(:members)
    """
)


class LedgerMachine(RuleBasedStateMachine):
    runner: asyncio.Runner
    sessionmaker: async_sessionmaker[AsyncSession]
    config: PointsSettings
    debts_seen = 0
    expired_refunds_seen = 0

    def __init__(self) -> None:
        super().__init__()
        self.clock = START
        self.members = [f"hm-{uuid.uuid4().hex[:12]}" for _ in range(2)]
        # order id -> [member, amount, points, refunded amount, points reversed, body]
        self.orders: dict[str, dict[str, Any]] = {}
        self.redemptions: dict[str, str] = {}
        self.earned = dict.fromkeys(self.members, 0)  # lifetime: order points - reversals
        # growth value credited (+) or reversed (-), by the entry's time; the tier it gave
        self.growth: dict[str, list[tuple[datetime, int]]] = {m: [] for m in self.members}
        self.tier = dict.fromkeys(self.members, "regular")
        for member in self.members:

            def enrol(s: AsyncSession, m: str = member) -> Awaitable[Any]:
                return members.enrol(s, self.config, MemberIn(member_id=m))

            self.tx(enrol)

    # -- plumbing ---------------------------------------------------------------------------

    def tx(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def run() -> T:
            async with self.sessionmaker() as session, session.begin():
                return await work(session)

        return self.runner.run(run())

    def sql(self, statement: Any, **params: Any) -> list[Any]:
        async def run() -> list[Any]:
            async with self.sessionmaker() as session:
                return list((await session.execute(statement, params)).all())

        return self.runner.run(run())

    def entry_count(self) -> int:
        rows = self.sql(
            text("SELECT count(*) FROM ledger_entries WHERE member_id = ANY(:members)"),
            members=self.members,
        )
        return int(rows[0][0])

    def grew(self, member: str, at: datetime, growth: int, *, credit: bool = True) -> None:
        """A ledger entry dated ``at`` added ``growth``; a credit upgrades at once when the
        growth value over the window ending at ``at`` qualifies above the tier held."""
        self.growth[member].append((at, growth))
        if not credit:
            return
        start = tiers.growth_window_start(LADDER, at)
        value = max(0, sum(g for when, g in self.growth[member] if when >= start))
        qualified = tiers.tier_for_growth(LADDER, value).code
        if tiers.rank(LADDER, qualified) > tiers.rank(LADDER, self.tier[member]):
            self.tier[member] = qualified

    def spendable(self, member: str) -> tuple[int, int]:
        """(spendable points at the current clock, debt) straight from the tables."""
        rows = self.sql(
            text(
                "SELECT (SELECT coalesce(sum(remaining), 0) FROM lots WHERE member_id = :m"
                " AND status = 'available' AND (expires_at IS NULL OR expires_at > :now)),"
                " (SELECT debt FROM balances WHERE member_id = :m)"
            ),
            m=member,
            now=self.clock,
        )
        return int(rows[0][0]), int(rows[0][1])

    # -- rules ------------------------------------------------------------------------------

    @initialize(amount=st.decimals(min_value=Decimal("1"), max_value=Decimal("300"), places=2))
    def start_with_points(self, amount: Decimal) -> None:
        """Each member starts with an old (spendable) order, so spending and debt come early."""
        for who in range(len(self.members)):
            self.place_order(who, amount, 30)

    @rule(
        who=st.integers(0, 1),
        amount=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("400"), places=2),
        days_ago=st.sampled_from([0, 3, 10, 10, 40]),
    )
    def place_order(self, who: int, amount: Decimal, days_ago: int) -> None:
        member = self.members[who]
        body = OrderIn(
            order_id=f"ho-{uuid.uuid4().hex[:12]}",
            member_id=member,
            amount=amount,
            occurred_at=self.clock - timedelta(days=days_ago),
        )
        out = self.tx(lambda s: orders.record_order(s, self.config, body, now=self.clock))
        points = int(amount.to_integral_value(rounding=ROUND_FLOOR))
        assert out.points_earned == points
        self.orders[body.order_id] = {
            "member": member,
            "amount": amount,
            "points": points,
            "refunded": Decimal("0"),
            "reversed": 0,
        }
        self.earned[member] += points
        self.grew(member, body.occurred_at, points)  # purchase points count, all of them
        # the storefront retries: the same answer, nothing credited twice
        before = self.entry_count()
        again = self.tx(lambda s: orders.record_order(s, self.config, body, now=self.clock))
        assert again == out
        assert self.entry_count() == before

    @rule(data=st.data(), who=st.integers(0, 1))
    def spend_then_refund(self, data: st.DataObject, who: int) -> None:
        """Spend everything, then the shop refunds one of the member's orders: a debt, mostly."""
        self.redeem_everything(who)
        mine = [o for o, v in self.orders.items() if v["member"] == self.members[who]]
        self.refund_order(data.draw(st.sampled_from(mine)), "1")

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), share=st.sampled_from(["0.1", "0.25", "0.5", "1", "1"]))
    def refund(self, data: st.DataObject, share: str) -> None:
        self.refund_order(data.draw(st.sampled_from(list(self.orders))), share)

    def refund_order(self, order_id: str, share: str) -> None:
        order = self.orders[order_id]
        amount = max(
            (order["amount"] * Decimal(share)).quantize(Decimal("0.01"), rounding=ROUND_FLOOR),
            Decimal("0.01"),
        )
        body = RefundIn(refund_id=f"hr-{uuid.uuid4().hex[:12]}", amount=amount)
        total = order["refunded"] + amount
        before = self.entry_count()
        try:
            out = self.tx(
                lambda s: refunds.refund_order(s, self.config, order_id, body, now=self.clock)
            )
        except RefundExceedsOrder:
            assert total > order["amount"]
            assert self.entry_count() == before
            return
        assert total <= order["amount"]
        expected = refunds.reversed_through(order["points"], order["amount"], total)
        assert out.points_reversed == expected - order["reversed"]
        assert (
            out.reversed_from_pending
            + out.reversed_from_available
            + out.debt_added
            + out.already_expired
            == out.points_reversed
        )
        if out.already_expired:
            LedgerMachine.expired_refunds_seen += 1
        order["refunded"] = total
        order["reversed"] = expected
        self.earned[order["member"]] -= out.points_reversed
        # the order's growth, reversed pro rata as its points (all its points counted)
        self.grew(order["member"], self.clock, -out.points_reversed, credit=False)
        # the storefront retries the refund: the same answer, nothing reversed twice
        before = self.entry_count()
        again = self.tx(
            lambda s: refunds.refund_order(s, self.config, order_id, body, now=self.clock)
        )
        assert again == out
        assert self.entry_count() == before

    @rule(who=st.integers(0, 1), points=st.integers(1, 300))
    def redeem(self, who: int, points: int) -> None:
        member = self.members[who]
        spendable, debt = self.spendable(member)
        before = self.entry_count()
        try:
            out = self.tx(
                lambda s: redemptions.redeem(
                    s, self.config, member, RedemptionIn(points=points), now=self.clock
                )
            )
        except PointsInDebt:
            assert debt > 0
            assert self.entry_count() == before
            return
        except InsufficientPoints:
            assert debt == 0 and spendable < points
            assert self.entry_count() == before
            return
        assert debt == 0 and spendable >= points
        assert out.points_spent == points == sum(lot.points for lot in out.lots)
        self.redemptions[out.redemption_id] = member

    @rule(who=st.integers(0, 1))
    def redeem_everything(self, who: int) -> None:
        """Spend all that is spendable (what makes a later refund turn into a debt)."""
        spendable, debt = self.spendable(self.members[who])
        if spendable > 0 and debt == 0:
            self.redeem(who, spendable)

    @precondition(lambda self: self.redemptions)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(list(self.redemptions)))
        first = self.tx(lambda s: redemptions.cancel(s, self.config, rid, now=self.clock))
        before = self.entry_count()
        again = self.tx(lambda s: redemptions.cancel(s, self.config, rid, now=self.clock))
        assert again == first  # a second cancel gives nothing back twice
        assert self.entry_count() == before

    @rule(who=st.integers(0, 1), points=st.integers(-150, 250).filter(lambda p: p != 0))
    def adjust(self, who: int, points: int) -> None:
        member = self.members[who]
        spendable, _ = self.spendable(member)
        body = AdjustmentIn(points=points, reason="stateful test")
        try:
            self.tx(
                lambda s: adjustments.adjust(
                    s, self.config, member, body, "op-hypothesis", now=self.clock
                )
            )
        except InsufficientPoints:
            assert points < 0 and spendable < -points
            return
        if points > 0:  # a credit counts (the ladder counts adjustments); a debit does not
            self.grew(member, self.clock, points)

    @rule(who=st.integers(0, 1))
    def check_in(self, who: int) -> None:
        """An action credit (5 points, counting toward growth here; once per day, capped)."""
        member = self.members[who]
        try:
            out = self.tx(
                lambda s: flows.check_in(s, self.config, None, member, CheckInIn(), now=self.clock)
            )
        except AlreadyCheckedIn:
            return
        self.earned[member] += out.points
        if out.points > 0:
            self.grew(member, self.clock, out.points)

    @rule()
    def run_jobs(self) -> None:
        self.runner.run(
            run_ledger_jobs(self.sessionmaker, self.config, self.clock, member_ids=self.members)
        )
        # what is due is done: nothing pending past its window, nothing spendable past its date
        rows = self.sql(
            text(
                "SELECT count(*) FROM lots WHERE member_id = ANY(:members) AND ("
                " (status = 'pending' AND available_at <= :now) OR"
                " (status = 'available' AND remaining > 0 AND expires_at <= :now))"
            ),
            members=self.members,
            now=self.clock,
        )
        assert rows[0][0] == 0

    @rule(days=st.sampled_from([1, 5, 8, 30, 60, 100]))
    def advance_clock(self, days: int) -> None:
        self.clock += timedelta(days=days)

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def window_growth_cache_is_exact(self) -> None:
        """The balance row's window cache gives the full sum, for windows on either side."""
        starts = [self.clock - timedelta(days=d) for d in (400, 95, 41, 12, 4, 0)]

        async def read() -> list[Any]:
            async with self.sessionmaker() as session:
                found = []
                for member in self.members:
                    for start in starts:
                        row = (
                            await session.execute(
                                select(
                                    ledger.window_growth(bindparam("w", type_=DateTime(True))),
                                    ledger.rolling_growth(
                                        balances.c.member_id, bindparam("w", type_=DateTime(True))
                                    ),
                                ).where(balances.c.member_id == member),
                                {"w": start},
                            )
                        ).one()
                        found.append((member, start, int(row[0]), int(row[1])))
                return found

        for member, start, cached, full in self.runner.run(read()):
            assert cached == full, (member, start, cached, full)

    @invariant()
    def tier_is_what_the_credits_qualified_for(self) -> None:
        rows = self.sql(
            text("SELECT member_id, tier FROM members WHERE member_id = ANY(:members)"),
            members=self.members,
        )
        assert {r.member_id: r.tier for r in rows} == self.tier

    @invariant()
    def ledger_is_consistent(self) -> None:
        async def read() -> list[list[Any]]:
            async with self.sessionmaker() as session:
                return [
                    list((await session.execute(q, {"members": self.members})).all())
                    for q in (INVARIANTS_SQL, LOTS_SQL, ENTRIES_WITHOUT_LOT_SQL, ORDERS_SQL)
                ]

        balances, lots, lotless, credited = self.runner.run(read())

        # cached balances = ledger sums = lots
        assert len(balances) == len(self.members)
        for r in balances:
            assert (r.available, r.pending, r.debt) == (r.e_available, r.e_pending, r.e_debt), r
            assert r.pending == r.l_pending, r
            assert r.available + r.pending == r.l_open - r.debt, r
            assert r.debt >= 0 and r.pending >= 0, r
            if r.debt > 0:  # earnings repay the debt first: nothing spendable is left
                event("member in debt")
                LedgerMachine.debts_seen += 1
                assert r.l_spendable == 0 and r.available == -r.debt, r
            assert r.l_expired == 0, r
            assert r.lifetime_earned == self.earned[r.member_id], r
            assert r.growth_value == sum(g for _, g in self.growth[r.member_id]), r

        # no lot overspent; every lot is the sum of its entries
        for lot in lots:
            assert 0 <= lot.remaining <= lot.points, lot
            assert lot.remaining == lot.from_entries, lot
        # an entry without a lot only moves available into debt (a refund of spent points)
        assert lotless[0][0] == 0

        # each order credited once; refunds reversed exactly the proportional share
        assert len(credited) == len(self.orders)
        for r in credited:
            order = self.orders[r.order_id]
            assert r.credits == (1 if order["points"] > 0 else 0), r
            assert r.reversed == order["reversed"], r


@pytest.fixture(scope="module")
async def stateful_db(infra: Infra) -> str:
    """A database of its own: the jobs here run with a simulated clock."""
    return await migrated_database(infra, "points_stateful", SERVICE_DIR)


@pytest.fixture
def machine(stateful_db: str, points_settings: PointsSettings) -> Iterator[type[LedgerMachine]]:
    config = points_settings.model_copy(
        update={"database_url": stateful_db, "pending_days": 7, "expiry_months": 3}
    )
    with asyncio.Runner() as runner:
        engine = runner.run(_engine(config))
        runner.run(_ladder_and_rules(engine))
        LedgerMachine.runner = runner
        LedgerMachine.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        LedgerMachine.config = config
        try:
            yield LedgerMachine
        finally:
            runner.run(engine.dispose())


async def _ladder_and_rules(engine: Any) -> None:
    """``LADDER``, and check-ins counting toward growth value."""
    async with async_sessionmaker(engine)() as session, session.begin():
        await tiers.replace_ladder(session, LADDER)
        await session.execute(
            text("UPDATE earning_rules SET counts_toward_growth = true WHERE action = 'check_in'")
        )


async def _engine(config: PointsSettings) -> Any:
    return create_async_engine(config.sqlalchemy_url(), pool_size=2)


@pytest.mark.timeout(600 if PROFILE is PROFILES["ci"] else 0)  # nightly: no limit
def test_ledger_invariants_hold_over_random_sequences(machine: type[LedgerMachine]) -> None:
    machine.debts_seen = machine.expired_refunds_seen = 0
    run_state_machine_as_test(machine, settings=PROFILE)
    # the sequences did reach the debt policy (spent points refunded, then repaid)
    assert machine.debts_seen > 0

    # and the reconciliation finds every balance of every sequence equal to its ledger
    async def reconcile() -> LedgerReport:
        async with machine.sessionmaker() as session:
            return await verify_ledger(await session.connection())

    report = machine.runner.run(reconcile())
    assert report.drift == [] and report.drift_count == 0
    assert report.members >= 2 and report.lots > 0
