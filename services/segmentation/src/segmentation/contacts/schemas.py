from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Channel = Literal["sms", "email", "app_push", "phone", "wechat", "mail"]


class ContactCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: str = Field(min_length=1, max_length=128)
    channel: Channel
    at: AwareDatetime | None = Field(default=None, description="default now")


class ContactCheckOut(BaseModel):
    member_id: str
    channel: str
    allowed: bool
    reasons: list[str]
    contacts_in_period: int
    cap: int
    period_days: int
    next_allowed_at: datetime | None
    preferred_channels: list[str]


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: str | None = Field(default=None, max_length=64, description="idempotency key")
    member_id: str = Field(min_length=1, max_length=128)
    channel: Channel
    campaign: str | None = Field(default=None, max_length=128)
    contacted_at: AwareDatetime | None = None


class ContactOut(BaseModel):
    contact_id: str
    member_id: str
    channel: str
    campaign: str | None
    contacted_at: datetime
    contacts_in_period: int
    cap: int


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferred_channels: list[Channel] = Field(default_factory=list, max_length=6)
    opted_out_channels: list[Channel] = Field(default_factory=list, max_length=6)


class PreferencesOut(PreferencesIn):
    member_id: str


class ContactPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cap: Annotated[
        int, Field(ge=0, le=1000, description="contacts allowed per period, all channels")
    ]
    period_days: Annotated[int, Field(ge=1, le=365)]
