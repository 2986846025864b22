from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from points.identifiers import ClientId


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: ClientId = Field(description="The shop's own customer id")
    name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 \-()]{5,32}$")
    birthday: date | None = None
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA zone, e.g. Asia/Shanghai"
    )
    referral_code: str | None = Field(
        default=None, max_length=32, description="Code of the member who referred this one"
    )

    @field_validator("member_id")
    @classmethod
    def _not_a_pseudonym(cls, value: str) -> str:
        if value.startswith("erased:"):  # privacy.service.ERASED_PREFIX: erased members' rows
            raise ValueError("member ids starting with 'erased:' are reserved")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("birthday")
    @classmethod
    def _past_birthday(cls, value: date | None) -> date | None:
        if value is not None and value >= date.today():
            raise ValueError("birthday must be in the past")
        return value


class MemberOut(BaseModel):
    member_id: str
    tier: str
    referral_code: str
    enrolled_at: datetime


class ExpiringPoints(BaseModel):
    points: int
    expires_at: datetime


class BalanceOut(BaseModel):
    available: int = Field(description="Spendable points; negative only while the member owes")
    pending: int = Field(description="Points still inside the return window")
    debt: int = Field(default=0, description="Points owed after refunds of spent points")
    expiring_soon: list[ExpiringPoints] = Field(
        default_factory=list, description="The next expiry dates and how much expires on each"
    )


class NextTier(BaseModel):
    code: str
    name: str
    growth_value_missing: int = Field(description="Exactly how much growth value is missing")


class BadgeOut(BaseModel):
    code: str
    name: str
    description: str


class MemberStatus(BaseModel):
    member_id: str
    tier: str
    tier_name: str
    enrolled_at: datetime
    balance: BalanceOut
    lifetime_earned: int
    growth_value: int = Field(
        default=0, description="Growth value over the ladder's rolling window (tiers)"
    )
    next_tier: NextTier | None = Field(description="null at the top tier")
    tier_held_until: datetime = Field(description="The earliest moment the tier can be lost")
    benefits: list[str]
    badges: list[BadgeOut]


class MemberErased(BaseModel):
    member_id: str
    erased_at: datetime


class MemberExport(BaseModel):
    member: dict[str, Any]
    balance: dict[str, int]
    ledger: list[dict[str, Any]]
    lots: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    redemptions: list[dict[str, Any]]
    check_ins: list[dict[str, Any]]
    interactions: list[dict[str, Any]]
