"""Reporting periods: out-of-range bounds are a 422 problem, never an overflow."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from loyalty_shared.periods import InvalidPeriod, resolve_period

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_default_period_is_the_last_days_before_to() -> None:
    period = resolve_period(None, None, now=NOW, default_days=30)
    assert period.end == NOW
    assert period.start == NOW - timedelta(days=30)
    assert period.previous.end == period.start


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        # A `to` near year 1: the default `from` (to - 30 days) would not be a date at all.
        (None, datetime(1, 1, 1, tzinfo=UTC), "query.to"),
        (None, datetime(1, 1, 2, tzinfo=timezone(timedelta(hours=5))), "query.to"),
        (datetime(1, 1, 1, tzinfo=UTC), NOW, "query.from"),
        (None, datetime(9999, 12, 31, tzinfo=UTC), "query.to"),
    ],
)
def test_out_of_range_bounds_are_refused(start: datetime | None, end: datetime, field: str) -> None:
    with pytest.raises(InvalidPeriod) as refused:
        resolve_period(start, end, now=NOW)
    assert refused.value.extensions["errors"][0]["field"] == field
