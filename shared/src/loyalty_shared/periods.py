"""Reporting periods from ``?from=&to=`` query parameters, with the previous period beside them.

Times must carry a UTC offset; the period must run forwards and stay within
years 1970..2200 (so "the previous period of equal length" is always a real date).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query
from pydantic import AwareDatetime

from loyalty_shared.problems import Unprocessable

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

PeriodFrom = Annotated[
    AwareDatetime | None,
    Query(alias="from", description="Start (inclusive), RFC 3339 with offset"),
]
PeriodTo = Annotated[
    AwareDatetime | None, Query(description="End (exclusive), RFC 3339 with offset; default now")
]


class InvalidPeriod(Unprocessable):
    slug = "invalid-period"
    title = "Invalid reporting period"


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def previous(self) -> Period:
        return Period(self.start - (self.end - self.start), self.start)


def _check_range(field: str, value: datetime) -> None:
    if not EARLIEST <= value <= LATEST:
        raise InvalidPeriod(
            f"{field.removeprefix('query.')} must be between {EARLIEST.year} and {LATEST.year}",
            errors=[{"field": field, "message": "out of range", "type": "out_of_range"}],
        )


def resolve_period(
    start: datetime | None, end: datetime | None, *, now: datetime, default_days: int = 30
) -> Period:
    end = end or now
    _check_range("query.to", end)
    # Checked first: a default start computed from an out-of-range end could overflow.
    start = start or end - timedelta(days=default_days)
    _check_range("query.from", start)
    if start >= end:
        raise InvalidPeriod(
            "from must be before to",
            errors=[{"field": "query.from", "message": "not before to", "type": "order"}],
        )
    if start - (end - start) < EARLIEST:
        raise InvalidPeriod(
            f"the previous period of equal length would start before {EARLIEST.year}",
            errors=[{"field": "query.from", "message": "period too long", "type": "out_of_range"}],
        )
    return Period(start, end)
