"""A segment's members as CSV, streamed for campaign tools (``GET .../members.csv``).

One read-only REPEATABLE READ transaction: every page is read from the same snapshot, so
the file is the membership at one instant (no member twice or missed while memberships
change), whatever its length. Pages are keyset scans of the primary key (segment_id,
member_id) in member id order, as ``GET .../members`` pages: constant memory, one page
in flight. The service holds no personal data (no name, email or phone): the file has the
member id (the shop's customer id) and when the member entered the segment.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from loyalty_shared.db import pool_slot

HEADER = ("member_id", "entered_at")
PAGE = 1000

_PAGE_SQL = text(
    "SELECT member_id, entered_at FROM segment_members "
    "WHERE segment_id = :sid AND member_id > :after ORDER BY member_id LIMIT :n"
)


def _csv(rows: Sequence[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerows(rows)
    return out.getvalue().encode()


async def member_rows(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    segment_id: str,
    page: int = PAGE,
) -> AsyncIterator[bytes]:
    """The header, then one chunk per page of members, all from one snapshot."""
    yield _csv([HEADER])
    async with pool_slot(engine), sessionmaker() as session, session.begin():
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        after = ""
        while True:
            rows = (
                await session.execute(_PAGE_SQL, {"sid": segment_id, "after": after, "n": page})
            ).all()
            if rows:
                yield _csv([(m, at.isoformat()) for m, at in rows])
                after = rows[-1][0]
            if len(rows) < page:
                return
