"""Reads of the ledger (no locks): the paged history."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from points.errors import MemberNotFound
from points.ledger.models import entries
from points.ledger.schemas import LedgerEntryOut, LedgerPage
from points.members.models import Member


async def ledger_page(
    session: AsyncSession, member_id: str, *, limit: int, before: int | None
) -> LedgerPage:
    """Entries newest first; ``before`` is the cursor (the last entry id of the previous page)."""
    known = (
        await session.execute(
            select(Member.member_id).where(
                Member.member_id == member_id, Member.erased_at.is_(None)
            )
        )
    ).first()
    if known is None:
        raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
    query = select(entries).where(entries.c.member_id == member_id).order_by(entries.c.id.desc())
    if before is not None:
        query = query.where(entries.c.id < before)
    rows = (await session.execute(query.limit(limit + 1))).all()
    items = [
        LedgerEntryOut(
            entry_id=r.id,
            type=r.entry_type,
            points=r.points,
            pending_change=r.pending_delta,
            debt_change=r.debt_delta,
            lot_id=r.lot_id,
            reason=r.reason,
            source_type=r.source_type,
            source_id=r.source_id,
            operator=r.operator,
            occurred_at=r.occurred_at,
            created_at=r.created_at,
        )
        for r in rows[:limit]
    ]
    next_cursor = str(items[-1].entry_id) if len(rows) > limit else None
    return LedgerPage(items=items, next_cursor=next_cursor)
