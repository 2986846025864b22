"""Badges (荣誉勋章): non-point honours for milestones, derived from what a member has done.

Pure and derived on read: a badge is shown when its milestone holds, so nothing has to be
stored or back-filled when a badge is added. The member status passes the facts it has.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class MemberFacts:
    enrolled_at: datetime
    orders_count: int = 0
    reviews_count: int = 0
    check_in_days: int = 0
    lifetime_earned: int = 0


@dataclass(frozen=True)
class Badge:
    code: str
    name: str
    description: str


def _years_member(facts: MemberFacts, now: datetime) -> int:
    start = facts.enrolled_at
    years = now.year - start.year
    day = min(start.day, calendar.monthrange(now.year, start.month)[1])
    if now < start.replace(year=now.year, day=day):
        years -= 1
    return max(0, years)


_RULES: tuple[tuple[Badge, Callable[[MemberFacts, datetime], bool]], ...] = (
    (Badge("first_order", "First order", "Completed a first order"),
     lambda f, _: f.orders_count >= 1),
    (Badge("ten_orders", "Regular shopper", "Completed 10 orders"),
     lambda f, _: f.orders_count >= 10),
    (Badge("first_review", "First review", "Wrote a first product review"),
     lambda f, _: f.reviews_count >= 1),
    (Badge("check_in_30", "Faithful", "Checked in on 30 days"),
     lambda f, _: f.check_in_days >= 30),
    (Badge("points_10k", "10,000 points", "Earned 10,000 points in total"),
     lambda f, _: f.lifetime_earned >= 10_000),
    (Badge("one_year_member", "One year with us", "A member for one year"),
     lambda f, now: _years_member(f, now) >= 1),
    (Badge("five_year_member", "Five years with us", "A member for five years"),
     lambda f, now: _years_member(f, now) >= 5),
)  # fmt: skip

ALL_BADGES: tuple[Badge, ...] = tuple(badge for badge, _ in _RULES)


def earned_badges(facts: MemberFacts, now: datetime) -> list[Badge]:
    """The badges whose milestone the member has reached, in a stable order."""
    return [badge for badge, reached in _RULES if reached(facts, now)]
