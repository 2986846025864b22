"""What the checkout path remembers about a member between two of its orders (in-process).

After an order written by the optimistic path (``record_order_optimistic``) this process
knows exactly what the next order of that member would read: the balance, the tier, that
it has ordered, the rolling window's growth value and the balance row's new version. The
next checkout of the member then writes in one statement, with no read before it. It is a
hint, never trusted: the write checks in Postgres that the balance row is still at that
version (any change to the member since writes that row: other orders, refunds,
redemptions, jobs, another replica) and that no entry counting toward growth lies
between the two orders' window starts; if either fails, nothing is written and the order
reads its facts again. Entries are few bytes, bounded in number and age.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from points.ledger.service import LockedBalance


@dataclass(frozen=True)
class RememberedFacts:
    locked: LockedBalance  # the balance row as the last write left it
    version: str  # the balance row's xmin after that write
    window_start: datetime  # the window its growth value was counted for
    window_sum: int  # the member's growth value over that window (exact, may be < 0)
    latest_entry_id: int  # the member's latest ledger entry id at that point
    stored: float  # time.monotonic() when remembered


class OrderFactsCache:
    def __init__(self, max_members: int = 50_000, max_age_seconds: float = 60.0) -> None:
        self.max_members = max_members
        self.max_age = max_age_seconds
        self._facts: OrderedDict[str, RememberedFacts] = OrderedDict()

    def get(self, member_id: str) -> RememberedFacts | None:
        facts = self._facts.get(member_id)
        if facts is None:
            return None
        if time.monotonic() - facts.stored > self.max_age:
            del self._facts[member_id]
            return None
        return facts

    def remember(self, member_id: str, facts: RememberedFacts) -> None:
        if self.max_members <= 0:
            return
        self._facts[member_id] = facts
        self._facts.move_to_end(member_id)
        while len(self._facts) > self.max_members:
            self._facts.popitem(last=False)

    def forget(self, member_id: str) -> None:
        self._facts.pop(member_id, None)

    def __len__(self) -> int:
        return len(self._facts)
