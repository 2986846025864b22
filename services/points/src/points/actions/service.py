"""Pure rules for points earned by actions: local days and months, natural keys, decisions.

Nothing here touches the database. The endpoints that will use it (check-ins,
interactions, the birthday job, referrals) do, in one transaction, under the member's
balance lock:

1. ``p = periods(at, member.timezone)``; sum the points this action already credited with
   ``occurred_at`` in ``[p.day_start, p.day_end)`` and ``[p.month_start, p.month_end)``;
2. ``d = decide(rule, ladder, already_today, already_this_month)``;
3. credit ``d.points`` (if > 0) under the natural key (``check_in_key``, ``interaction_key``,
   ``birthday_key``, ``referral_key``) so a retry or a second check-in the same local day
   hits the unique key instead of crediting twice; add ``d.growth_points`` to growth value;
4. answer 202 with ``d.points`` and ``d.reason`` (a capped action earns 0 and says why).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from points.rules.schemas import ActionType, EarningRuleFields
from points.rules.service import CapReason, allowed_points
from points.tiers.schemas import TierLadderIn
from points.tiers.service import counts_toward_growth

ActionReason = CapReason | Literal["no_rule"]

# interaction types (POST /v1/interactions) that have an earning rule of the same name
INTERACTION_ACTIONS: dict[str, ActionType] = {
    "review": "review",
    "share": "share",
    "activity": "activity",
    "survey": "survey",
    "survey_completed": "survey",
    "login": "login",
    "page_view": "page_view",
}


@dataclass(frozen=True)
class Periods:
    """The member's current local day and month as UTC instants, end exclusive."""

    local_day: date
    day_start: datetime
    day_end: datetime
    month_start: datetime
    month_end: datetime


@dataclass(frozen=True)
class ActionDecision:
    points: int
    reason: ActionReason
    growth_points: int


def _zone(timezone: str) -> ZoneInfo:
    return ZoneInfo(timezone)


def local_day(at: datetime, timezone: str) -> date:
    """The calendar day ``at`` falls on in the member's time zone (``at`` must be aware)."""
    if at.tzinfo is None:
        raise ValueError("at must carry a UTC offset")
    return at.astimezone(_zone(timezone)).date()


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def periods(at: datetime, timezone: str) -> Periods:
    """Local day and month around ``at``; DST days are 23 or 25 hours long, as they should be."""
    zone = _zone(timezone)
    day = local_day(at, timezone)
    first = day.replace(day=1)
    next_first = first + timedelta(days=calendar.monthrange(day.year, day.month)[1])
    return Periods(
        local_day=day,
        day_start=_start_of(day, zone),
        day_end=_start_of(day + timedelta(days=1), zone),
        month_start=_start_of(first, zone),
        month_end=_start_of(next_first, zone),
    )


def check_in_key(member_id: str, at: datetime, timezone: str) -> str:
    """One check-in per member per local calendar day: the second one hits this key (409)."""
    return f"check_in:{member_id}:{local_day(at, timezone).isoformat()}"


def interaction_key(event_id: str) -> str:
    return f"interaction:{event_id}"


def birthday_key(member_id: str, year: int) -> str:
    """Once a year: the birthday job credits under this key."""
    return f"birthday:{member_id}:{year}"


def referral_key(new_member_id: str, side: Literal["referrer", "new_member"]) -> str:
    """Each side of a referral is credited once, when the new member's first order completes."""
    return f"referral:{new_member_id}:{side}"


def birthday_in(year: int, birthday: date) -> date:
    """The member's birthday in ``year``; 29 February is celebrated on 28 February otherwise."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def is_birthday(birthday: date, at: datetime, timezone: str) -> bool:
    today = local_day(at, timezone)
    return birthday_in(today.year, birthday) == today


def action_for_interaction(interaction_type: str) -> ActionType | None:
    """The earning rule an interaction type uses, or None (recorded, earns nothing)."""
    return INTERACTION_ACTIONS.get(interaction_type)


def decide(
    rule: EarningRuleFields | None,
    ladder: TierLadderIn,
    already_today: int,
    already_this_month: int,
) -> ActionDecision:
    """Points for one more action and how many of them add to growth value."""
    if rule is None:
        return ActionDecision(points=0, reason="no_rule", growth_points=0)
    points, reason = allowed_points(rule, already_today, already_this_month)
    counts = counts_toward_growth(ladder, "action", rule_counts=rule.counts_toward_growth)
    return ActionDecision(points=points, reason=reason, growth_points=points if counts else 0)
