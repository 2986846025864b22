from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field


class RFMOut(BaseModel):
    r: int | None
    f: int | None
    m: int | None
    segment: str | None


class CLVOut(BaseModel):
    p_alive: float | None
    expected_purchases_90d: float | None
    expected_value: Decimal | None = Field(
        description="Expected spend over 90 days (decimal string)"
    )
    churn_risk: float | None = Field(description="1 - p_alive")


class LoyaltyOut(BaseModel):
    index: float | None = Field(description="0..100, AHP-weighted sum of the 7 indicators")
    type: str | None
    reasons: list[str]
    indicators: dict[str, float] | None


class ProfileOut(BaseModel):
    member_id: str
    enrolled_at: datetime | None
    timezone: str | None
    tier: str | None
    order_count: int
    total_spend: Decimal = Field(description="Order amounts minus refunds (decimal string)")
    gross_spend: Decimal
    refunded_amount: Decimal
    refund_count: int
    average_order_value: Decimal | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    days_since_last_order: int | None
    coupon_order_count: int
    coupon_share: float | None
    discount_total: Decimal
    categories: list[str]
    channels: list[str]
    points_earned: int
    points_redeemed: int
    points_expired: int
    points_balance: int
    reviews: int
    shares: int
    check_ins: int
    logins: int
    page_views: int
    activities: int
    referrals: int
    complaints: int
    surveys: int
    nps_last: int | None
    csat_avg: Decimal | None
    tags: list[str]
    manual_tags: list[str]
    rule_tags: list[str]
    scores_as_of: datetime | None
    rfm: RFMOut
    value_tier: str | None
    lifecycle: str | None
    median_gap_days: float | None
    value_group: str | None
    behaviour_group: str | None
    loyalty: LoyaltyOut
    strategies: list[str]
    clv: CLVOut
    updated_at: datetime


class ProfilePage(BaseModel):
    items: list[ProfileOut]
    next_cursor: str | None
    total: int
