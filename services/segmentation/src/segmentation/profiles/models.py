"""Profiles and the per-order / per-activity facts they are built from (all from events)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from segmentation.db import Base

_EMPTY_ARRAY = text("'{}'::text[]")


def _count() -> Mapped[int]:
    return mapped_column(Integer, nullable=False, server_default="0")


def _money() -> Mapped[Decimal]:
    return mapped_column(Numeric(16, 2), nullable=False, server_default="0")


class Profile(Base):
    """The 360 view of one member: live totals from events + scores from the last recompute."""

    __tablename__ = "profiles"

    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    enrolled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    timezone: Mapped[str | None] = mapped_column(String(64))
    tier: Mapped[str | None] = mapped_column(String(64))
    tier_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # orders (live)
    order_count: Mapped[int] = _count()
    total_spend: Mapped[Decimal] = _money()  # gross - refunded
    gross_spend: Mapped[Decimal] = _money()
    refunded_amount: Mapped[Decimal] = _money()
    refund_count: Mapped[int] = _count()
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    coupon_order_count: Mapped[int] = _count()
    discount_total: Mapped[Decimal] = _money()
    categories: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=_EMPTY_ARRAY
    )
    channels: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=_EMPTY_ARRAY
    )
    # points (live)
    points_earned: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    points_redeemed: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    points_expired: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    points_balance: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    points_balance_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # interactions and feedback (live)
    reviews: Mapped[int] = _count()
    shares: Mapped[int] = _count()
    check_ins: Mapped[int] = _count()
    logins: Mapped[int] = _count()
    page_views: Mapped[int] = _count()
    activities: Mapped[int] = _count()
    referrals: Mapped[int] = _count()
    last_interaction_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    complaints: Mapped[int] = _count()
    first_complaint_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    surveys: Mapped[int] = _count()
    nps_last: Mapped[int | None] = mapped_column(Integer)
    csat_sum: Mapped[Decimal] = _money()
    csat_count: Mapped[int] = _count()
    manual_tags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=_EMPTY_ARRAY
    )
    rule_tags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=_EMPTY_ARRAY
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # scores as of the last recompute (NULL outside the population)
    scores_as_of: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rfm_r: Mapped[int | None] = mapped_column(Integer)
    rfm_f: Mapped[int | None] = mapped_column(Integer)
    rfm_m: Mapped[int | None] = mapped_column(Integer)
    rfm_segment: Mapped[str | None] = mapped_column(String(32))
    value_tier: Mapped[str | None] = mapped_column(String(16))
    lifecycle: Mapped[str | None] = mapped_column(String(16))
    median_gap_days: Mapped[float | None] = mapped_column(Float)
    value_group: Mapped[str | None] = mapped_column(String(16))
    behaviour_group: Mapped[str | None] = mapped_column(String(32))
    loyalty_index: Mapped[float | None] = mapped_column(Float)
    loyalty_indicators: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    loyalty_type: Mapped[str | None] = mapped_column(String(16))
    loyalty_reasons: Mapped[list[str] | None] = mapped_column(JSONB)
    strategies: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=_EMPTY_ARRAY
    )
    p_alive: Mapped[float | None] = mapped_column(Float)
    expected_purchases_90d: Mapped[float | None] = mapped_column(Float)
    expected_value: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))

    __table_args__ = (
        Index("ix_profiles_value_tier", "value_tier"),
        Index("ix_profiles_rfm_segment", "rfm_segment"),
        # room on each page for the new versions of its rows: a consumer batch writes a
        # member's profile twice (its events, then its rule tags), and a HOT update on
        # the same page writes no index entry (migration 0009)
        {"postgresql_with": {"fillfactor": 70}},
    )


class MemberOrder(Base):
    """One order's facts, kept so time-windowed scores can be recomputed as of any instant."""

    __tablename__ = "member_orders"

    order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric(16, 2), nullable=False)
    currency: Mapped[str | None] = mapped_column(String(8))
    discount_amount: Mapped[Decimal] = _money()
    coupon_used: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    channel: Mapped[str | None] = mapped_column(String(64))
    categories: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=_EMPTY_ARRAY
    )
    max_unit_price: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_member_orders_member_time", "member_id", "occurred_at"),
        Index("ix_member_orders_occurred_at", "occurred_at"),
    )


class OrderRefund(Base):
    """A refund (refund_id is the natural key); it reduces spend from its occurred_at on."""

    __tablename__ = "order_refunds"

    refund_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(16, 2), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class MemberActivity(Base):
    """Non-order activity with its time (interactions, redemptions, complaints, surveys)."""

    __tablename__ = "member_activities"

    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_member_activities_member_time", "member_id", "occurred_at"),
        Index("ix_member_activities_occurred_at", "occurred_at"),
    )


class TierChange(Base):
    """Tier history (enrolment tier + every tier.changed) for tier distributions as of a date."""

    __tablename__ = "tier_changes"

    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    tier: Mapped[str] = mapped_column(String(64), nullable=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
