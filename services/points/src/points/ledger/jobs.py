"""Ledger jobs: mature pending lots whose return window closed, expire lots past their date.

Each member is handled in its own transaction under its balance row lock; a lot
changes status there, and its entry carries a unique key (``lot:<id>:mature`` /
``lot:<id>:expire``), so running a job twice, or two workers at once, acts once.
Both take an explicit ``now`` so tests (and back-fills) can move the clock.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared import idempotency
from points import events
from points.db import idempotency_keys
from points.ledger import models as lm
from points.ledger import service as ledger
from points.ledger.models import lots
from points.settings import PointsSettings

log = structlog.get_logger("points.ledger.jobs")


@dataclass
class JobResult:
    members: int = 0
    lots: int = 0
    points: int = 0


def _due_pending(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (lots.c.status == lm.LOT_PENDING, lots.c.available_at <= now)


def _due_expiry(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        lots.c.status == lm.LOT_AVAILABLE,
        lots.c.remaining > 0,
        lots.c.expires_at.is_not(None),
        lots.c.expires_at <= now,
    )


async def _members_with(
    sessionmaker: async_sessionmaker[AsyncSession],
    conditions: tuple[ColumnElement[bool], ...],
    limit: int,
    member_ids: Sequence[str] | None,
) -> list[str]:
    query = select(lots.c.member_id).where(*conditions).distinct().limit(limit)
    if member_ids is not None:
        query = query.where(lots.c.member_id.in_(member_ids))
    async with sessionmaker() as session:
        rows = await session.execute(query)
        return [r[0] for r in rows]


async def _lock_and_read_due(
    session: AsyncSession, member_id: str, due_at: Any, conditions: Sequence[Any]
) -> tuple[ledger.LockedBalance, Sequence[Any]] | None:
    """The member's balance lock, then their lots due by ``conditions`` (oldest ``due_at``
    first); None when the member is gone or nothing is due."""
    locked = await ledger.lock_balance(session, member_id)
    if locked is None:
        return None
    due = (
        await session.execute(
            select(lots.c.id, lots.c.remaining, due_at)
            .where(lots.c.member_id == member_id, *conditions)
            .order_by(due_at, lots.c.id)
        )
    ).all()
    return (locked, due) if due else None


async def mature_member(session: AsyncSession, member_id: str, now: datetime) -> tuple[int, int]:
    """Turn the member's due pending lots available; returns (lots, points)."""
    found = await _lock_and_read_due(session, member_id, lots.c.available_at, _due_pending(now))
    if found is None:
        return 0, 0
    locked, due = found
    posting = ledger.Posting(session, locked, "lot", "maturing", now, reason="return window closed")
    matured = []
    for lot in due:
        if lot.remaining > 0:
            posting.entry(
                lm.MATURE,
                f"lot:{lot.id}:mature",
                points=lot.remaining,
                pending=-lot.remaining,
                lot_id=lot.id,
            )
            matured.append({"lot_id": lot.id, "points": lot.remaining})
    await session.execute(
        update(lots).where(lots.c.id.in_([lot.id for lot in due])).values(status=lm.LOT_AVAILABLE)
    )
    await posting.settle_debt(key=f"mature:{due[0].id}")
    balance = await posting.finish()
    total = sum(x["points"] for x in matured)
    if matured:
        await events.publish(
            session,
            events.points_event(
                events.POINTS_MATURED,
                member_id,
                {
                    "member_id": member_id,
                    "points": total,
                    "lots": matured,
                    "occurred_at": now.isoformat(),
                    "balance_available": balance.available,
                    "balance_pending": balance.pending,
                },
                time=now,
            ),
        )
    return len(due), total


async def expire_member(session: AsyncSession, member_id: str, now: datetime) -> tuple[int, int]:
    """Expire what is left of the member's lots past their date; returns (lots, points)."""
    found = await _lock_and_read_due(session, member_id, lots.c.expires_at, _due_expiry(now))
    if found is None:
        return 0, 0
    locked, due = found
    posting = ledger.Posting(session, locked, "lot", "expiry", now, reason="points expired")
    for lot in due:
        posting.entry(lm.EXPIRE, f"lot:{lot.id}:expire", points=-lot.remaining, lot_id=lot.id)
    await posting.sync_lots()
    await session.execute(
        update(lots).where(lots.c.id.in_([lot.id for lot in due])).values(status=lm.LOT_EXPIRED)
    )
    balance = await posting.finish()
    total = sum(lot.remaining for lot in due)
    await events.publish(
        session,
        events.points_event(
            events.POINTS_EXPIRED,
            member_id,
            {
                "member_id": member_id,
                "points": total,
                "lots": [
                    {
                        "lot_id": lot.id,
                        "points": lot.remaining,
                        "expires_at": lot.expires_at.isoformat(),
                    }
                    for lot in due
                ],
                "occurred_at": now.isoformat(),
                "balance_available": balance.available,
            },
            time=now,
        ),
    )
    return len(due), total


async def _per_member(
    sessionmaker: async_sessionmaker[AsyncSession],
    due: tuple[ColumnElement[bool], ...],
    apply: Callable[[AsyncSession, str, datetime], Awaitable[tuple[int, int]]],
    now: datetime,
    batch: int,
    member_ids: Sequence[str] | None,
) -> JobResult:
    """Run ``apply`` for each member with due lots, one transaction per member."""
    result = JobResult()
    while members := await _members_with(sessionmaker, due, batch, member_ids):
        for member_id in members:
            async with sessionmaker() as session, session.begin():
                n, points = await apply(session, member_id, now)
            result.members += 1
            result.lots += n
            result.points += points
        if len(members) < batch:
            break
    return result


async def mature_pending(
    sessionmaker: async_sessionmaker[AsyncSession],
    now: datetime,
    *,
    batch: int = 500,
    member_ids: Sequence[str] | None = None,
) -> JobResult:
    return await _per_member(sessionmaker, _due_pending(now), mature_member, now, batch, member_ids)


async def expire_lots(
    sessionmaker: async_sessionmaker[AsyncSession],
    now: datetime,
    *,
    batch: int = 500,
    member_ids: Sequence[str] | None = None,
) -> JobResult:
    return await _per_member(sessionmaker, _due_expiry(now), expire_member, now, batch, member_ids)


async def run_ledger_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: PointsSettings,
    now: datetime,
    *,
    member_ids: Sequence[str] | None = None,
) -> tuple[JobResult, JobResult]:
    """Mature first (a lot that matured and expired in the same gap is then expired).

    ``member_ids`` limits a run to those members (back-fills, tests).
    """
    matured = await mature_pending(sessionmaker, now, member_ids=member_ids)
    expired = await expire_lots(sessionmaker, now, member_ids=member_ids)
    if member_ids is None:
        async with sessionmaker() as session, session.begin():
            await idempotency.prune(
                session,
                idempotency_keys,
                now - timedelta(hours=settings.idempotency_retention_hours),
            )
    if matured.lots or expired.lots:
        log.info(
            "ledger_jobs_ran",
            matured_lots=matured.lots,
            matured_points=matured.points,
            expired_lots=expired.lots,
            expired_points=expired.points,
        )
    return matured, expired
