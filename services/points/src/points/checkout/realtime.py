"""The bound on a real-time order's ``occurred_at`` (``POST /v1/orders``; ``client_times``).

Checked before the checkout takes its turn: the window and the skew need no database, and
the enrolment only when the order is older than the skew (every enrolment is at or
before now, so a checkout stamped "now" by the shop never needs it). A member's enrolment
time never changes (an erased id is never enrolled again), so each process remembers the
ones it read. The history import (``POST /v1/orders/batch``) has none of these bounds but
the skew: it records orders as of their own time.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from points.client_times import TimeBounds
from points.members.models import Member
from points.orders.schemas import OrderIn

HISTORY_HINT = " (history goes through POST /v1/orders/batch)"


class EnrolmentTimes:
    """When members enrolled, as read from Postgres, remembered per process (bounded)."""

    def __init__(self, max_members: int = 100_000) -> None:
        self.max_members = max_members
        self._known: OrderedDict[str, datetime] = OrderedDict()

    async def get(self, engine: AsyncEngine, member_id: str) -> datetime | None:
        """The member's enrolment, or None for a member unknown or erased (the checkout then
        refuses it as it always did)."""
        known = self._known.get(member_id)
        if known is not None:
            return known
        async with engine.connect() as conn:
            found = (
                await conn.execute(
                    select(Member.enrolled_at).where(
                        Member.member_id == member_id, Member.erased_at.is_(None)
                    )
                )
            ).scalar_one_or_none()
        if found is not None and self.max_members > 0:
            self._known[member_id] = found
            while len(self._known) > self.max_members:
                self._known.popitem(last=False)
        return found


async def check_order_time(
    bounds: TimeBounds,
    enrolments: EnrolmentTimes,
    engine: AsyncEngine,
    data: OrderIn,
    now: datetime | None = None,
) -> None:
    """Raise ``TimeOutOfBounds`` (422, ``body.occurred_at``) for a time the route refuses."""
    now = now or datetime.now(UTC)
    bounds.check(data.occurred_at, now, history_hint=HISTORY_HINT)
    if bounds.may_precede_enrolment(data.occurred_at, now):
        enrolled = await enrolments.get(engine, data.member_id)
        bounds.check(data.occurred_at, now, enrolled_at=enrolled)
