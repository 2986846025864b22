"""The birthday bonus: a periodic job with an explicit ``now``. On the member's birthday in
their time zone (29 February: 28 February in other years), the ``birthday`` rule's points,
once a year (natural key ``birthday:<member>:<year>``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import extract, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from points.actions.credit import earn_for_action, lock_action_member
from points.actions.service import birthday_key, is_birthday, local_day
from points.ledger.models import entries
from points.members.models import Member
from points.settings import PointsSettings
from points.tiers import service as tiers


async def birthday_bonuses(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: PointsSettings,
    now: datetime,
    *,
    member_ids: Sequence[str] | None = None,
) -> int:
    """Credit the birthday rule to members whose local day today is their birthday."""
    async with sessionmaker() as session:
        ladder = await tiers.load_ladder(session)
        # today (or yesterday / tomorrow in UTC) is someone's birthday somewhere: filter by
        # month and day around now, then check each member in their own zone
        days = {(now + timedelta(days=d)).date() for d in (-1, 0, 1)}
        month_days = {(d.month, d.day) for d in days} | (
            {(2, 29)} if any((d.month, d.day) == (2, 28) for d in days) else set()
        )
        query = select(Member.member_id, Member.birthday, Member.timezone).where(
            Member.birthday.is_not(None),
            Member.erased_at.is_(None),
            tuple_(extract("month", Member.birthday), extract("day", Member.birthday)).in_(
                sorted(month_days)
            ),
        )
        if member_ids is not None:
            query = query.where(Member.member_id.in_(member_ids))
        rows = (await session.execute(query)).all()
        due: list[tuple[str, int, str]] = []  # (member, local year, key)
        for row in rows:
            if is_birthday(row.birthday, now, row.timezone):
                year = local_day(now, row.timezone).year
                due.append((row.member_id, year, birthday_key(row.member_id, year)))
        # already credited this year (an earlier run today): skip without a lock
        paid = set(
            (
                await session.execute(
                    select(entries.c.idempotency_key).where(
                        entries.c.idempotency_key.in_([key for _, _, key in due])
                    )
                )
            ).scalars()
        )
    credited = 0
    for member_id, year, key in due:
        if key in paid:
            continue
        async with sessionmaker() as session, session.begin():
            member = await lock_action_member(session, member_id)
            if member is None:
                continue
            done = (
                await session.execute(select(entries.c.id).where(entries.c.idempotency_key == key))
            ).first()
            if done is not None:
                continue
            earned = await earn_for_action(
                session,
                settings,
                ladder,
                member,
                action="birthday",
                key=key,
                source_id=str(year),
                at=now,
            )
            credited += earned.points > 0
    return credited
