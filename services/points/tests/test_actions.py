"""Pure rules for action points: local days in the member's zone, natural keys, decisions."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from points.actions import service as actions
from points.rules.schemas import EarningRuleFields
from points.tiers.schemas import Tier, TierLadderIn

LADDER = TierLadderIn(
    tiers=[
        Tier(code="regular", name="Regular", threshold=0),
        Tier(code="gold", name="Gold", threshold=100, multiplier=Decimal("1.5")),
    ],
    growth_point_types=["purchase", "action"],
)


def test_check_in_day_is_the_members_local_day() -> None:
    # 2026-03-01 17:30 UTC is already 2 March in Shanghai (UTC+8), still 1 March in New York
    at = datetime(2026, 3, 1, 17, 30, tzinfo=UTC)
    assert actions.local_day(at, "Asia/Shanghai") == date(2026, 3, 2)
    assert actions.local_day(at, "America/New_York") == date(2026, 3, 1)
    assert actions.check_in_key("m1", at, "Asia/Shanghai") == "check_in:m1:2026-03-02"


def test_two_check_ins_the_same_local_day_share_a_key() -> None:
    morning = datetime(2026, 5, 10, 0, 5, tzinfo=UTC)  # 08:05 in Shanghai
    night = datetime(2026, 5, 10, 15, 55, tzinfo=UTC)  # 23:55 in Shanghai
    after_midnight = datetime(2026, 5, 10, 16, 0, tzinfo=UTC)  # 00:00 on 11 May
    key = actions.check_in_key("m", morning, "Asia/Shanghai")
    assert actions.check_in_key("m", night, "Asia/Shanghai") == key
    assert actions.check_in_key("m", after_midnight, "Asia/Shanghai") != key


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        actions.local_day(datetime(2026, 1, 1, 12), "UTC")


def test_periods_in_shanghai() -> None:
    p = actions.periods(datetime(2026, 2, 28, 20, tzinfo=UTC), "Asia/Shanghai")
    assert p.local_day == date(2026, 3, 1)
    assert p.day_start == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert p.day_end == datetime(2026, 3, 1, 16, tzinfo=UTC)
    assert p.month_start == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert p.month_end == datetime(2026, 3, 31, 16, tzinfo=UTC)


def test_periods_across_daylight_saving() -> None:
    # New York springs forward on 8 March 2026: that local day is 23 hours long
    p = actions.periods(datetime(2026, 3, 8, 15, tzinfo=UTC), "America/New_York")
    assert p.day_end - p.day_start == timedelta(hours=23)
    autumn = actions.periods(datetime(2026, 11, 1, 15, tzinfo=UTC), "America/New_York")
    assert autumn.day_end - autumn.day_start == timedelta(hours=25)
    december = actions.periods(datetime(2026, 12, 31, 12, tzinfo=UTC), "America/New_York")
    assert december.month_end == datetime(2027, 1, 1, 5, tzinfo=UTC)


ZONES = [
    "Asia/Shanghai",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "UTC",
]


@settings(deadline=None)  # no timing asserts: a busy CI machine must not fail it
@given(
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(ZONES),
)
def test_periods_contain_the_instant(at: datetime, zone: str) -> None:
    p = actions.periods(at, zone)
    assert p.month_start <= p.day_start <= at < p.day_end <= p.month_end
    assert actions.local_day(p.day_start, zone) == p.local_day
    assert actions.local_day(p.day_end - timedelta(microseconds=1), zone) == p.local_day
    assert actions.local_day(p.day_end, zone) == p.local_day + timedelta(days=1)


def test_birthday_once_a_year_and_29_february() -> None:
    leap = date(2000, 2, 29)
    assert actions.birthday_in(2027, leap) == date(2027, 2, 28)
    assert actions.birthday_in(2028, leap) == date(2028, 2, 29)
    # 27 Feb 17:00 UTC is 28 Feb in Shanghai
    assert actions.is_birthday(leap, datetime(2027, 2, 27, 17, tzinfo=UTC), "Asia/Shanghai")
    assert not actions.is_birthday(leap, datetime(2027, 2, 27, 17, tzinfo=UTC), "UTC")
    assert actions.birthday_key("m", 2027) == "birthday:m:2027"


def test_natural_keys() -> None:
    assert actions.interaction_key("evt-1") == "interaction:evt-1"
    assert actions.referral_key("new", "referrer") != actions.referral_key("new", "new_member")


def test_interaction_types_map_to_rules() -> None:
    assert actions.action_for_interaction("review") == "review"
    assert actions.action_for_interaction("survey_completed") == "survey"
    assert actions.action_for_interaction("wishlist_add") is None


def test_decide_applies_caps_and_growth_flags() -> None:
    rule = EarningRuleFields(points=5, daily_cap=5, monthly_cap=150, counts_toward_growth=True)
    assert actions.decide(rule, LADDER, 0, 0) == actions.ActionDecision(5, "granted", 5)
    assert actions.decide(rule, LADDER, 5, 5) == actions.ActionDecision(0, "capped_daily", 0)
    no_growth = rule.model_copy(update={"counts_toward_growth": False})
    assert actions.decide(no_growth, LADDER, 0, 0) == actions.ActionDecision(5, "granted", 0)
    purchase_only = LADDER.model_copy(update={"growth_point_types": ["purchase"]})
    assert actions.decide(rule, purchase_only, 0, 0).growth_points == 0
    assert actions.decide(None, LADDER, 0, 0) == actions.ActionDecision(0, "no_rule", 0)
