from datetime import date, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from points.identifiers import ClientId


def _not_future(at: datetime | None) -> None:
    from datetime import UTC, timedelta

    if at is not None and at > datetime.now(UTC) + timedelta(minutes=5):
        raise ValueError("occurred_at is in the future")


def _fits_int64(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return all(_fits_int64(v) for v in value.values())
    if isinstance(value, list):
        return all(_fits_int64(v) for v in value)
    return True


class CheckInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    occurred_at: AwareDatetime | None = Field(
        default=None, description="When the member checked in (default: now)"
    )

    @model_validator(mode="after")
    def _past(self) -> "CheckInIn":
        _not_future(self.occurred_at)
        return self


class CheckInOut(BaseModel):
    member_id: str
    local_day: date = Field(description="The member's calendar day (in their time zone)")
    points: int
    reason: str = Field(description="granted / capped_daily / capped_monthly / disabled ...")
    balance_available: int


class InteractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: ClientId = Field(description="The caller's id for this interaction: sent once")
    member_id: ClientId
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    occurred_at: AwareDatetime
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _storable(cls, attributes: dict[str, Any]) -> dict[str, Any]:
        # Kept as JSON and hashed for replays: an integer beyond 64 bits cannot be encoded.
        if not _fits_int64(attributes):
            raise ValueError("integers in attributes must fit in 64 bits")
        return attributes

    @model_validator(mode="after")
    def _past(self) -> "InteractionIn":
        _not_future(self.occurred_at)
        return self


class InteractionOut(BaseModel):
    event_id: str
    member_id: str
    type: str
    points: int
    reason: str = Field(
        description="granted / capped_daily / capped_monthly / disabled / no_points / no_rule"
    )
