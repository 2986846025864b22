from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from feedback.sla.calendar import WEEKDAYS


class Kind(StrEnum):
    complaint = "complaint"
    enquiry = "enquiry"


class ChannelClass(StrEnum):
    online = "online"
    offline = "offline"


class ValueTier(StrEnum):
    high = "high"
    medium = "medium"
    low = "low"


class SeverityMatch(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class PolicyMatch(BaseModel):
    """Which complaints the policy applies to; a missing field matches anything."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind | None = None
    channel_class: ChannelClass | None = Field(
        default=None,
        description="online = online_chat, app, web, email, social; offline = phone, store",
    )
    tier: str | None = Field(default=None, max_length=64, description="member tier, e.g. diamond")
    value_tier: ValueTier | None = None
    severity: SeverityMatch | None = None


_MINUTES = Field(default=None, ge=1, le=60 * 24 * 365)


class SlaPolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=0, ge=-1000, le=1000)
    active: bool = True
    match: PolicyMatch = Field(default_factory=PolicyMatch)
    first_response_minutes: int | None = _MINUTES
    resolution_minutes: int | None = _MINUTES
    escalated_resolution_minutes: int | None = _MINUTES
    calendar_id: str | None = Field(
        default=None, max_length=64, description="business-hours calendar; null = 24/7"
    )
    pausable: bool = Field(
        default=True, description="clocks may pause while waiting on the customer"
    )
    goodwill_points: int = Field(
        default=0, ge=0, le=1_000_000, description="points credited per breach (0 = off)"
    )


class SlaPolicyOut(SlaPolicyIn):
    id: str
    updated_at: datetime


Weekday = Annotated[str, StringConstraints(max_length=3)]
# [start, end] as HH:MM (the calendar checks them); a day has at most 24 working intervals
Interval = Annotated[list[Annotated[str, StringConstraints(max_length=5)]], Field(max_length=2)]
DayHours = Annotated[list[Interval], Field(max_length=24)]


class CalendarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field(min_length=1, max_length=64, examples=["Asia/Shanghai"])
    hours: dict[Weekday, DayHours] = Field(
        max_length=len(WEEKDAYS),
        description=f"working intervals per weekday ({', '.join(WEEKDAYS)}), "
        'e.g. {"mon": [["09:00", "12:00"], ["13:00", "18:00"]]}; a missing day is off',
    )
    holidays: list[date] = Field(default_factory=list, max_length=2000)

    def holidays_as_dates(self) -> list[date]:
        return list(self.holidays)


class CalendarOut(BaseModel):
    id: str
    name: str
    timezone: str
    hours: dict[str, list[list[str]]]
    holidays: list[str]
    updated_at: datetime
