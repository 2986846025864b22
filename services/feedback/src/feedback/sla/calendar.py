"""Clocks for SLA deadlines: 24/7, or business hours in a timezone with holidays.

Both answer the same two questions:
- ``add(start, seconds)``: the instant when ``seconds`` of working time after
  ``start`` have elapsed (the deadline);
- ``working_seconds(a, b)``: how much working time lies between two instants
  (used to credit paused time back).
Arithmetic is done in UTC; business hours are read in the calendar's timezone,
so a deadline is right across daylight-saving changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_DAYS = 3 * 366  # a deadline further than this in working time is a configuration error


class InvalidCalendar(ValueError):
    """A calendar that cannot be used (unknown timezone, no working hours, bad interval)."""


class Clock(Protocol):
    def add(self, start: datetime, seconds: float) -> datetime: ...

    def working_seconds(self, start: datetime, end: datetime) -> float: ...


class AlwaysOpen:
    """24/7: working time is wall-clock time."""

    def add(self, start: datetime, seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    def working_seconds(self, start: datetime, end: datetime) -> float:
        return max((end - start).total_seconds(), 0.0)


def _parse_time(value: str) -> time:
    if value == "24:00":
        return time.max
    try:
        return time.fromisoformat(value)
    except ValueError as exc:
        raise InvalidCalendar(f"{value!r} is not a time of day (HH:MM)") from exc


@dataclass(frozen=True)
class BusinessHours:
    """Working intervals per weekday (local time), holidays (local dates), a timezone."""

    timezone: ZoneInfo
    hours: Mapping[int, Sequence[tuple[time, time]]]
    holidays: frozenset[date]

    @classmethod
    def from_config(
        cls, timezone: str, hours: Mapping[str, Sequence[Sequence[str]]], holidays: Sequence[str]
    ) -> BusinessHours:
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidCalendar(f"unknown timezone {timezone!r}") from exc
        parsed: dict[int, list[tuple[time, time]]] = {}
        for day, intervals in hours.items():
            if day not in WEEKDAYS:
                raise InvalidCalendar(f"{day!r} is not a weekday ({', '.join(WEEKDAYS)})")
            spans: list[tuple[time, time]] = []
            for interval in intervals:
                if len(interval) != 2:
                    raise InvalidCalendar(f"{day}: an interval is [start, end]")
                start, end = _parse_time(interval[0]), _parse_time(interval[1])
                if end <= start:
                    raise InvalidCalendar(
                        f"{day}: {interval[0]}-{interval[1]} ends before it starts"
                    )
                spans.append((start, end))
            spans.sort()
            for (_, e1), (s2, _) in pairwise(spans):
                if s2 < e1:
                    raise InvalidCalendar(f"{day}: intervals overlap")
            parsed[WEEKDAYS.index(day)] = spans
        if not any(parsed.values()):
            raise InvalidCalendar("a business-hours calendar needs at least one working interval")
        try:
            days = frozenset(date.fromisoformat(d) for d in holidays)
        except ValueError as exc:
            raise InvalidCalendar(f"holidays must be dates (YYYY-MM-DD): {exc}") from exc
        return cls(timezone=zone, hours=parsed, holidays=days)

    def _intervals_from(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working intervals in UTC, in order, from the local day containing ``start``."""
        day = start.astimezone(self.timezone).date()
        for _ in range(_MAX_DAYS):
            if day not in self.holidays:
                for s, e in self.hours.get(day.weekday(), ()):
                    begin = datetime.combine(day, s, self.timezone).astimezone(UTC)
                    if e == time.max:
                        finish = datetime.combine(
                            day + timedelta(days=1), time.min, self.timezone
                        ).astimezone(UTC)
                    else:
                        finish = datetime.combine(day, e, self.timezone).astimezone(UTC)
                    yield begin, finish
            day += timedelta(days=1)

    def add(self, start: datetime, seconds: float) -> datetime:
        remaining = timedelta(seconds=seconds)
        for begin, finish in self._intervals_from(start):
            begin = max(begin, start)
            if finish <= begin:
                continue
            if remaining <= finish - begin:
                return begin + remaining
            remaining -= finish - begin
        raise InvalidCalendar("the deadline lies more than three years of calendar ahead")

    def working_seconds(self, start: datetime, end: datetime) -> float:
        total = 0.0
        if end <= start:
            return total
        for begin, finish in self._intervals_from(start):
            if begin >= end:
                break
            lo, hi = max(begin, start), min(finish, end)
            if hi > lo:
                total += (hi - lo).total_seconds()
        return total
