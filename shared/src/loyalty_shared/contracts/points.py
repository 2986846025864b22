"""Events the points service publishes (topic ``loyalty.points.events``, source ``loyalty/points``).

The points service builds every one of these from the models here (its checkout writes the
same bytes by hand, proven equal by ``services/points/tests/test_event_rows.py``).
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from loyalty_shared.contracts.base import EventPayload, Money, Timestamp
from loyalty_shared.topics import POINTS_EVENTS

_AT = "2026-11-23T10:15:02.113000+00:00"


class PointsEvent(EventPayload):
    SOURCE: ClassVar[str] = "loyalty/points"
    TOPIC: ClassVar[str] = POINTS_EVENTS


class OrderItemV1(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sku: str
    category: str | None
    unit_price: Money
    quantity: int


class LotPointsV1(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    lot_id: int
    points: int


class ExpiredLotV1(LotPointsV1):
    expires_at: Timestamp


class MemberEnrolledV1(PointsEvent):
    """A member joined the programme (``POST /v1/members``, or an import with enrol_missing)."""

    TYPE: ClassVar[str] = "loyalty.member.enrolled.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "tier": "regular",
        "enrolled_at": _AT,
        "timezone": "Asia/Shanghai",
    }

    member_id: str
    tier: str = Field(description="the tier code the member starts in")
    enrolled_at: Timestamp
    timezone: str = Field(description="IANA name; the member's local day for check-ins")


class OrderRecordedV1(PointsEvent):
    """A completed order was recorded (once per order id), with what it earned."""

    TYPE: ClassVar[str] = "loyalty.order.recorded.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "order_id": "o-77",
        "member_id": "m-1001",
        "amount": "128.50",
        "currency": "CNY",
        "discount_amount": "10.00",
        "coupon_used": "WELCOME10",
        "channel": "app",
        "items": [{"sku": "tea-1", "category": "tea", "unit_price": "64.25", "quantity": 2}],
        "occurred_at": _AT,
        "points_earned": 192,
        "points_pending": 192,
        "campaigns_applied": ["double-tea"],
        "first_order": False,
    }

    order_id: str
    member_id: str
    amount: Money = Field(description="what the customer paid, after discounts")
    currency: str
    discount_amount: Money
    coupon_used: str | None = Field(description="the coupon code, if one was used")
    channel: str | None
    items: list[OrderItemV1]
    occurred_at: Timestamp
    points_earned: int = Field(description="all the points this order earned")
    points_pending: int = Field(description="the part still in the return window")
    campaigns_applied: list[str]
    first_order: bool


class OrderRefundedV1(PointsEvent):
    """A (partial) refund of an order; ``points_reversed`` of what it earned were taken back."""

    TYPE: ClassVar[str] = "loyalty.order.refunded.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "order_id": "o-77",
        "refund_id": "r-1",
        "member_id": "m-1001",
        "amount": "64.25",
        "currency": "CNY",
        "order_amount": "128.50",
        "refunded_total": "64.25",
        "fully_refunded": False,
        "points_reversed": 96,
        "occurred_at": _AT,
    }

    order_id: str
    refund_id: str
    member_id: str
    amount: Money
    currency: str
    order_amount: Money
    refunded_total: Money = Field(description="every refund of the order so far, this one in")
    fully_refunded: bool
    points_reversed: int
    occurred_at: Timestamp


class PointsEarnedV1(PointsEvent):
    """Points credited: for an order, or an action (check-in, review, survey, birthday...)."""

    TYPE: ClassVar[str] = "loyalty.points.earned.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "points": 192,
        "pending": True,
        "available_at": "2026-12-07T10:15:02.113000+00:00",
        "expires_at": "2027-11-23T10:15:02.113000+00:00",
        "source_type": "order",
        "source_id": "o-77",
        "occurred_at": _AT,
        "balance_available": 1200,
        "balance_pending": 192,
        "breakdown": {"base_points": 128, "tier_multiplier": "1.5", "tier_bonus": 64},
    }

    member_id: str
    points: int
    pending: bool = Field(description="held in the return window until available_at")
    available_at: Timestamp
    expires_at: Timestamp | None
    source_type: str = Field(description="order, action:<action>, referral, goodwill, ...")
    source_id: str
    occurred_at: Timestamp
    balance_available: int
    balance_pending: int
    breakdown: dict[str, Any] = Field(description="how the points were computed (for people)")


class PointsMaturedV1(PointsEvent):
    """Pending points left the return window and became spendable."""

    TYPE: ClassVar[str] = "loyalty.points.matured.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "points": 192,
        "lots": [{"lot_id": 42, "points": 192}],
        "occurred_at": _AT,
        "balance_available": 1392,
        "balance_pending": 0,
    }

    member_id: str
    points: int
    lots: list[LotPointsV1]
    occurred_at: Timestamp
    balance_available: int
    balance_pending: int


class PointsReversedV1(PointsEvent):
    """Points taken back by a refund (from pending, available, or as debt)."""

    TYPE: ClassVar[str] = "loyalty.points.reversed.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "points": 96,
        "from_pending": 96,
        "from_available": 0,
        "debt_added": 0,
        "already_expired": 0,
        "source_type": "refund",
        "source_id": "r-1",
        "order_id": "o-77",
        "occurred_at": _AT,
        "balance_available": 1200,
        "balance_pending": 96,
        "debt": 0,
    }

    member_id: str
    points: int
    from_pending: int
    from_available: int
    debt_added: int
    already_expired: int
    source_type: str
    source_id: str
    order_id: str
    occurred_at: Timestamp
    balance_available: int
    balance_pending: int
    debt: int


class PointsRedeemedV1(PointsEvent):
    """Points spent on a reward or off an order, oldest lots first."""

    TYPE: ClassVar[str] = "loyalty.points.redeemed.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "redemption_id": "rd-9",
        "points": 500,
        "reward_id": "mug",
        "quantity": 1,
        "order_id": None,
        "lots": [{"lot_id": 40, "points": 500}],
        "occurred_at": _AT,
        "balance_available": 700,
    }

    member_id: str
    redemption_id: str
    points: int
    reward_id: str | None
    quantity: int | None
    order_id: str | None
    lots: list[LotPointsV1]
    occurred_at: Timestamp
    balance_available: int


class RedemptionCancelledV1(PointsEvent):
    """A redemption was cancelled: its points came back (same lots, or new ones if expired)."""

    TYPE: ClassVar[str] = "loyalty.points.redemption_cancelled.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "redemption_id": "rd-9",
        "points_returned": 500,
        "returned_to_same_lots": 500,
        "returned_as_new_lots": 0,
        "reward_id": "mug",
        "occurred_at": _AT,
        "balance_available": 1200,
    }

    member_id: str
    redemption_id: str
    points_returned: int
    returned_to_same_lots: int
    returned_as_new_lots: int
    reward_id: str | None
    occurred_at: Timestamp
    balance_available: int


class PointsExpiredV1(PointsEvent):
    """What was left of lots past their expiry date expired."""

    TYPE: ClassVar[str] = "loyalty.points.expired.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "points": 30,
        "lots": [{"lot_id": 12, "points": 30, "expires_at": _AT}],
        "occurred_at": _AT,
        "balance_available": 1170,
    }

    member_id: str
    points: int
    lots: list[ExpiredLotV1]
    occurred_at: Timestamp
    balance_available: int


class PointsAdjustedV1(PointsEvent):
    """Ops added or removed points by hand, with a reason."""

    TYPE: ClassVar[str] = "loyalty.points.adjusted.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "adjustment_id": "adj-3",
        "points": -50,
        "reason": "duplicate goodwill",
        "operator": "agent-ann",
        "occurred_at": _AT,
        "balance_available": 1150,
    }

    member_id: str
    adjustment_id: str
    points: int = Field(description="signed: negative removes points")
    reason: str
    operator: str
    occurred_at: Timestamp
    balance_available: int


class TierChangedV1(PointsEvent):
    """The member's tier changed: up at once when growth qualifies, down at evaluation."""

    TYPE: ClassVar[str] = "loyalty.tier.changed.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "from_tier": "silver",
        "to_tier": "gold",
        "direction": "up",
        "reason": "order",
        "growth_value": 5200,
        "occurred_at": _AT,
    }

    member_id: str
    from_tier: str
    to_tier: str
    direction: Literal["up", "down"]
    reason: str = Field(description="order, action, ladder_changed, evaluation, ...")
    growth_value: int
    occurred_at: Timestamp


class InteractionRecordedV1(PointsEvent):
    """An interaction the storefront reported (review, share, login, page view, ...)."""

    TYPE: ClassVar[str] = "loyalty.interaction.recorded.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "event_id": "ev-5",
        "member_id": "m-1001",
        "type": "review",
        "occurred_at": _AT,
        "attributes": {"sku": "tea-1", "stars": 5},
        "points": 20,
        "reason": "rule",
    }

    event_id: str
    member_id: str
    type: str
    occurred_at: Timestamp
    attributes: dict[str, Any]
    points: int
    reason: str


class MemberCheckedInV1(PointsEvent):
    """The member's daily check-in (once per local day), whatever it earned."""

    TYPE: ClassVar[str] = "loyalty.member.checked_in.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "local_day": "2026-11-23",
        "occurred_at": _AT,
        "points": 5,
    }

    member_id: str
    local_day: date = Field(description="the day in the member's time zone")
    occurred_at: Timestamp
    points: int


class MemberErasedV1(PointsEvent):
    """The member asked to be forgotten: every service drops what it holds about them."""

    TYPE: ClassVar[str] = "loyalty.member.erased.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {"member_id": "m-1001", "erased_at": _AT}

    member_id: str
    erased_at: Timestamp


PUBLISHED: tuple[type[PointsEvent], ...] = (
    MemberEnrolledV1,
    OrderRecordedV1,
    OrderRefundedV1,
    PointsEarnedV1,
    PointsMaturedV1,
    PointsReversedV1,
    PointsRedeemedV1,
    RedemptionCancelledV1,
    PointsExpiredV1,
    PointsAdjustedV1,
    TierChangedV1,
    InteractionRecordedV1,
    MemberCheckedInV1,
    MemberErasedV1,
)
