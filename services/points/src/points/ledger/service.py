"""Ledger writes: every change is an entry; lots and the cached balance move in the same tx.

Every write to a member's points starts with ``lock_balance`` (the member's balance
row, ``SELECT ... FOR UPDATE``), so one member's writes are serialised and no two
writers ever take locks in different orders: balance row first, then (for reward
redemptions) the reward row.

A ``Posting`` gathers the entries of one operation under that lock and writes them
with few statements: the entries in one ``INSERT``, the lot changes in one
executemany ``UPDATE`` and the balance in one ``UPDATE ... RETURNING``.
"""

from __future__ import annotations

from calendar import monthrange
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from points.errors import InsufficientPoints, MemberNotFound
from points.ledger import models as m
from points.ledger.models import balances, entries, lots


@dataclass(frozen=True)
class LockedBalance:
    member_id: str
    available: int
    pending: int
    debt: int
    lifetime_earned: int
    growth_value: int
    tier: str


@dataclass(frozen=True)
class BalanceNow:
    available: int
    pending: int
    debt: int


def balance_lock_statement(
    *extra_columns: Any, live_only: bool = False, member_id: Any = None, lock: bool = True
) -> Any:
    """``SELECT ... FOR UPDATE`` of the member's balance row with what ``LockedBalance`` holds.

    Every ledger write starts with it (always in this one order: the balance row first).
    ``live_only`` leaves out erased members; ``extra_columns`` are read in the same round
    trip (the order path adds the growth value and first-order facts). ``lock=False``
    reads the same without locking (the order path's optimistic first attempt).
    """
    from points.members.models import Member

    members = Member.__table__
    member_id = bindparam("p_member_id") if member_id is None else member_id
    conditions = [balances.c.member_id == member_id]
    if live_only:
        conditions.append(members.c.erased_at.is_(None))
    statement = (
        select(
            balances.c.member_id,
            balances.c.available,
            balances.c.pending,
            balances.c.debt,
            balances.c.lifetime_earned,
            balances.c.growth_value,
            members.c.tier,
            *extra_columns,
        )
        .join(members, members.c.member_id == balances.c.member_id)
        .where(*conditions)
    )
    return statement.with_for_update(of=balances) if lock else statement


_LOCK_BALANCE = balance_lock_statement()


async def lock_balance(session: AsyncSession, member_id: str) -> LockedBalance | None:
    """Take the member's balance row lock (every ledger write goes through here first)."""
    conn = await session.connection()  # Core: this is on every write's path
    row = (await conn.execute(_LOCK_BALANCE, {"p_member_id": member_id})).first()
    if row is None:
        return None
    return LockedBalance(
        row.member_id,
        row.available,
        row.pending,
        row.debt,
        row.lifetime_earned,
        row.growth_value,
        row.tier,
    )


async def lock_member(session: AsyncSession, member_id: str) -> LockedBalance:
    locked = await lock_balance(session, member_id)
    if locked is None:
        raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
    return locked


async def touch_balance(session: AsyncSession, *member_ids: str) -> None:
    """Write the members' balance rows (``updated_at``) for a change that moves no points.

    Every change to what an order reads about a member (its orders and entries, its tier,
    whether it is erased) writes the balance row in the same transaction: the order path
    compares the row's version (``xmin``) with the one it read its facts with, and a new
    version is how it knows they may be out of date (``points.checkout``). Rows are
    written in member id order, so two callers never lock them in different orders.
    """
    await session.execute(
        update(balances)
        .where(balances.c.member_id == bindparam("b_member_id"))
        .values(updated_at=func.now()),
        [{"b_member_id": member_id} for member_id in sorted(member_ids)],
    )


def expiry_for(earned_at: datetime, months: int) -> datetime | None:
    """A lot earned at ``earned_at`` expires ``months`` later (0 = never)."""
    if months <= 0:
        return None
    return add_months(earned_at, months)


def add_months(moment: datetime, months: int) -> datetime:
    """Same day and time ``months`` later (clamped to the month's last day: Jan 31 -> Feb 28)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, monthrange(year, month)[1]))


def fifo_order() -> tuple[Any, ...]:
    """Spend order: the lot that expires first, then the oldest, then the lowest id."""
    return (lots.c.expires_at.asc().nulls_last(), lots.c.earned_at.asc(), lots.c.id.asc())


@dataclass
class Posting:
    """One operation's ledger changes for one member, whose balance row the caller has locked."""

    session: AsyncSession
    locked: LockedBalance
    source_type: str
    source_id: str
    occurred_at: datetime
    reason: str | None = None
    operator: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    lot_deltas: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    d_available: int = 0
    d_pending: int = 0
    d_debt: int = 0
    d_lifetime: int = 0
    d_growth: int = 0

    @property
    def member_id(self) -> str:
        return self.locked.member_id

    @property
    def debt(self) -> int:
        return self.locked.debt + self.d_debt

    @property
    def available(self) -> int:
        return self.locked.available + self.d_available

    @property
    def pending(self) -> int:
        return self.locked.pending + self.d_pending

    def entry(
        self,
        entry_type: str,
        key: str,
        *,
        points: int = 0,
        pending: int = 0,
        debt: int = 0,
        lot_id: int | None = None,
        reason: str | None = None,
        growth: int = 0,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an entry; its lot moves by ``points + pending + debt``.

        ``growth`` is what the entry adds to growth value (counted over the ladder's rolling
        window by ``occurred_at``); ``details`` an optional breakdown (JSON).
        """
        assert entry_type in m.ENTRY_TYPES
        self.rows.append(
            {
                "member_id": self.member_id,
                "entry_type": entry_type,
                "points": points,
                "pending_delta": pending,
                "debt_delta": debt,
                "lot_id": lot_id,
                "reason": reason if reason is not None else self.reason,
                "source_type": self.source_type,
                "source_id": self.source_id,
                "idempotency_key": key,
                "operator": self.operator,
                "occurred_at": self.occurred_at,
                "growth_delta": growth,
                "details": details,
            }
        )
        self.d_growth += growth
        self.d_available += points
        self.d_pending += pending
        self.d_debt += debt
        if lot_id is not None:
            self.lot_deltas[lot_id] += points + pending + debt

    async def credit(
        self,
        points: int,
        *,
        key: str,
        entry_type: str,
        earned_at: datetime,
        available_at: datetime,
        expires_at: datetime | None,
        pending: bool = False,
        lifetime: bool = True,
        growth: int = 0,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """A new lot of ``points`` (pending or available) and its entry; returns the lot id."""
        assert points > 0
        lot_id = (
            await self.session.execute(
                lots.insert()
                .values(
                    member_id=self.member_id,
                    points=points,
                    remaining=0,
                    status=m.LOT_PENDING if pending else m.LOT_AVAILABLE,
                    source_type=self.source_type,
                    source_id=self.source_id,
                    earned_at=earned_at,
                    available_at=available_at,
                    expires_at=expires_at,
                )
                .returning(lots.c.id)
            )
        ).scalar_one()
        amounts = {"pending": points} if pending else {"points": points}
        self.entry(
            entry_type,
            key,
            lot_id=lot_id,
            growth=growth,
            reason=reason,
            details=details,
            **amounts,
        )
        if lifetime:
            self.d_lifetime += points
        return int(lot_id)

    def lower_lifetime(self, points: int) -> None:
        """Take ``points`` off lifetime earned (a reversal of points once earned)."""
        self.d_lifetime -= points

    def take_growth(self, growth: int, entry_type: str, *, key: str) -> None:
        """Take ``growth`` off growth value: on the operation's first entry, or on an entry
        of its own (``entry_type``, ``key``) when it has none."""
        if growth == 0:
            return
        if self.rows:
            self.rows[0]["growth_delta"] -= growth
            self.d_growth -= growth
        else:
            self.entry(entry_type, key, growth=-growth)

    async def sync_lots(self) -> None:
        """Write the lot changes gathered so far (before reading lots again)."""
        changes = [{"lot": k, "delta": v} for k, v in self.lot_deltas.items() if v != 0]
        self.lot_deltas.clear()
        if not changes:
            return
        await self.session.execute(
            update(lots)
            .where(lots.c.id == bindparam("lot"))
            .values(remaining=lots.c.remaining + bindparam("delta")),
            changes,
        )

    async def spendable_lots(self, now: datetime | None) -> list[tuple[int, int]]:
        """(lot id, remaining) of available lots in FIFO order; ``now`` hides expired ones."""
        await self.sync_lots()
        query = (
            select(lots.c.id, lots.c.remaining)
            .where(
                lots.c.member_id == self.member_id,
                lots.c.status == m.LOT_AVAILABLE,
                lots.c.remaining > 0,
            )
            .order_by(*fifo_order())
        )
        if now is not None:
            query = query.where(or_(lots.c.expires_at.is_(None), lots.c.expires_at > now))
        return [(r.id, r.remaining) for r in (await self.session.execute(query)).all()]

    async def spend(self, points: int, *, entry_type: str, key: str, now: datetime) -> int:
        """Take ``points`` from available lots, FIFO (409 if short); returns the lots used."""
        candidates = await self.spendable_lots(now)
        have = sum(r for _, r in candidates)
        if have < points:
            raise InsufficientPoints(
                f"Member {self.member_id!r} has {have} spendable points, {points} needed",
                available=have,
                required=points,
            )
        left = points
        used = 0
        for lot_id, remaining in candidates:
            if left == 0:
                break
            take = min(left, remaining)
            self.entry(entry_type, f"{key}:lot:{lot_id}", points=-take, lot_id=lot_id)
            left -= take
            used += 1
        return used

    async def claw_back(self, points: int, *, key: str) -> tuple[int, int]:
        """Take up to ``points`` from any available lots (FIFO); the rest becomes a debt.

        Returns (taken from lots, added to debt).
        """
        left = points
        for lot_id, remaining in await self.spendable_lots(None):
            if left == 0:
                break
            take = min(left, remaining)
            self.entry(m.REFUND_REVERSAL, f"{key}:lot:{lot_id}", points=-take, lot_id=lot_id)
            left -= take
        if left > 0:
            self.entry(m.REFUND_REVERSAL, f"{key}:debt", points=-left, debt=left)
        return points - left, left

    async def settle_debt(self, *, key: str) -> int:
        """Repay an outstanding debt from available lots first; returns what was repaid."""
        if self.debt <= 0:
            return 0
        repaid = 0
        for lot_id, remaining in await self.spendable_lots(None):
            if self.debt <= 0:
                break
            take = min(self.debt, remaining)
            self.entry(m.DEBT_REPAYMENT, f"{key}:repay:{lot_id}", debt=-take, lot_id=lot_id)
            repaid += take
        return repaid

    async def finish(self) -> BalanceNow:
        """Write entries, lot changes and the cached balance; returns the new balance."""
        if self.rows:
            await self.session.execute(entries.insert(), self.rows)
        await self.sync_lots()
        row = (
            await self.session.execute(
                update(balances)
                .where(balances.c.member_id == self.member_id)
                .values(
                    available=balances.c.available + self.d_available,
                    pending=balances.c.pending + self.d_pending,
                    debt=balances.c.debt + self.d_debt,
                    lifetime_earned=balances.c.lifetime_earned + self.d_lifetime,
                    growth_value=balances.c.growth_value + self.d_growth,
                )
                .returning(balances.c.available, balances.c.pending, balances.c.debt)
            )
        ).one()
        return BalanceNow(row.available, row.pending, row.debt)


def rolling_growth(member_id: Any, window_start: Any) -> Any:
    """Scalar subquery: growth value credited at or after ``window_start`` (rolling window)."""

    return (
        select(func.coalesce(func.sum(entries.c.growth_delta), 0))
        .where(entries.c.member_id == member_id, entries.c.occurred_at >= window_start)
        .scalar_subquery()
    )


def window_growth(window_start: Any) -> Any:
    """``rolling_growth`` for a statement that reads the member's ``balances`` row.

    From the row's window cache: the cached sum, corrected by the entries up to the cached
    id dated between the cached start and ``window_start`` (taken off when the window
    moved forward, added when it is earlier, e.g. an order dated a second before the last
    one), plus the entries written since the cached id and dated in the window. Each part
    reads only the entries in between, so a checkout no longer adds up the member's whole
    year. Without a cache yet, the full sum.

    Exact by construction: the ledger's property test compares it with ``rolling_growth``
    after every step. It relies on every entry of a member being written under the
    member's balance-row lock (one member's entry ids then grow in commit order), so the
    entries a statement can see are exactly those up to the latest id it sees.
    """
    from sqlalchemy import case, func

    member = balances.c.member_id
    cached_start = balances.c.growth_cache_start
    cached_id = balances.c.growth_cache_entry_id
    # Each part has one range the index can use, and the other condition inside the sum:
    # given both, the planner may pick the wrong index and read the whole window.
    between = (
        select(
            func.coalesce(
                func.sum(
                    case(
                        (entries.c.id > cached_id, 0),
                        (entries.c.occurred_at < cached_start, entries.c.growth_delta),
                        else_=-entries.c.growth_delta,
                    )
                ),
                0,
            )
        )
        .where(
            entries.c.member_id == member,
            entries.c.occurred_at >= func.least(cached_start, window_start),
            entries.c.occurred_at < func.greatest(cached_start, window_start),
        )
        .scalar_subquery()
    )
    written_since = (
        select(
            func.coalesce(
                func.sum(
                    case((entries.c.occurred_at >= window_start, entries.c.growth_delta), else_=0)
                ),
                0,
            )
        )
        .where(entries.c.member_id == member, entries.c.id > cached_id)
        .scalar_subquery()
    )
    return case(
        (cached_start.is_(None), rolling_growth(member, window_start)),
        else_=balances.c.growth_cache_sum + between + written_since,
    )


def latest_entry_id() -> Any:
    """Scalar subquery: the id of the member's latest ledger entry (0 if none), for the cache."""

    return (
        select(func.coalesce(func.max(entries.c.id), 0))
        .where(entries.c.member_id == balances.c.member_id)
        .scalar_subquery()
    )


async def growth_value(session: AsyncSession, member_id: str, window_start: datetime) -> int:
    """The member's growth value: what counted toward it since ``window_start``, never < 0."""
    value = (await session.execute(select(rolling_growth(member_id, window_start)))).scalar_one()
    return max(0, int(value))


def expiring_soon_statement(member_id: Any, now: Any, limit: Any) -> Any:
    """The next expiry dates of the member's available points: rows of (points, expires_at)."""

    return (
        select(func.sum(lots.c.remaining).label("points"), lots.c.expires_at)
        .where(
            lots.c.member_id == member_id,
            lots.c.status == m.LOT_AVAILABLE,
            lots.c.remaining > 0,
            and_(lots.c.expires_at.is_not(None), lots.c.expires_at > now),
        )
        .group_by(lots.c.expires_at)
        .order_by(lots.c.expires_at)
        .limit(limit)
    )
