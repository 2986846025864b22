"""Events the segmentation service publishes (topic ``loyalty.segmentation.events``).

Segment entered/left come from the live refresh (per event) and the batch refresh (per
recompute); the three score changes come from the recompute only, once per member whose
value changed, in the recompute's transaction.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from loyalty_shared.contracts.base import EventPayload, Money, Timestamp
from loyalty_shared.topics import SEGMENTATION_EVENTS

ValueTier = Literal["high", "medium", "low"]
LifecycleStage = Literal["new", "growing", "mature", "sleeping", "churn-risk", "churned"]
ChurnRiskLevel = Literal["low", "medium", "high"]

_AT = "2026-11-23T02:00:00+00:00"


class SegmentationEvent(EventPayload):
    SOURCE: ClassVar[str] = "loyalty/segmentation"
    TOPIC: ClassVar[str] = SEGMENTATION_EVENTS


class _SegmentMembership(SegmentationEvent):
    segment_id: str
    segment_name: str = Field(description="the name ops gave the segment")
    member_id: str
    at: Timestamp
    trigger: str = Field(description="the event type that moved the member, or recompute")


class SegmentEnteredV1(_SegmentMembership):
    """The member now meets a saved segment's condition."""

    TYPE: ClassVar[str] = "loyalty.segment.entered.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "segment_id": "seg-7",
        "segment_name": "Churn risk",
        "member_id": "m-1001",
        "at": _AT,
        "trigger": "loyalty.order.recorded.v1",
    }


class SegmentLeftV1(_SegmentMembership):
    """The member no longer meets a saved segment's condition."""

    TYPE: ClassVar[str] = "loyalty.segment.left.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "segment_id": "seg-7",
        "segment_name": "Churn risk",
        "member_id": "m-1001",
        "at": _AT,
        "trigger": "recompute",
    }


class ValueTierChangedV1(SegmentationEvent):
    """The member's value tier (high / medium / low, DOMAIN's three layers) changed at a
    recompute. ``from_value_tier`` is null the first time; ``to_value_tier`` is null when the
    member left the recompute's population."""

    TYPE: ClassVar[str] = "loyalty.profile.value_tier_changed.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "from_value_tier": "medium",
        "to_value_tier": "high",
        "as_of": _AT,
        "annual_spend": "12800.00",
        "annual_orders": 9,
    }

    member_id: str
    from_value_tier: ValueTier | None
    to_value_tier: ValueTier | None
    as_of: Timestamp = Field(description="the instant the recompute scored")
    annual_spend: Money = Field(description="net spend in the 365 days before as_of")
    annual_orders: int = Field(description="orders in the 365 days before as_of")


class LifecycleChangedV1(SegmentationEvent):
    """The member's lifecycle stage changed at a recompute (relative to their own rhythm)."""

    TYPE: ClassVar[str] = "loyalty.profile.lifecycle_changed.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "from_stage": "mature",
        "to_stage": "churn-risk",
        "as_of": _AT,
        "days_since_last_order": 95.5,
        "median_gap_days": 30.0,
    }

    member_id: str
    from_stage: LifecycleStage | None
    to_stage: LifecycleStage | None
    as_of: Timestamp
    days_since_last_order: float | None
    median_gap_days: float | None


class ChurnRiskChangedV1(SegmentationEvent):
    """The member's churn-risk level (from 1 - p_alive of the BG/NBD fit) changed at a
    recompute; the thresholds are segmentation's settings."""

    TYPE: ClassVar[str] = "loyalty.profile.churn_risk_changed.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "member_id": "m-1001",
        "from_churn_risk": "low",
        "to_churn_risk": "high",
        "churn_risk": 0.82,
        "as_of": _AT,
    }

    member_id: str
    from_churn_risk: ChurnRiskLevel | None
    to_churn_risk: ChurnRiskLevel | None
    churn_risk: float | None = Field(description="1 - p_alive, 0..1; null without a fit")
    as_of: Timestamp


PUBLISHED: tuple[type[SegmentationEvent], ...] = (
    SegmentEnteredV1,
    SegmentLeftV1,
    ValueTierChangedV1,
    LifecycleChangedV1,
    ChurnRiskChangedV1,
)
