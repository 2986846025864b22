"""Rewards (the catalogue, with stock) and redemptions of points."""

from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from points.db import Base

REWARD_KINDS = ("product", "service", "coupon")


class Reward(Base):
    """A catalogue reward. ``stock`` NULL = unlimited; redemption decrements it conditionally."""

    __tablename__ = "rewards"
    __table_args__ = (
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        CheckConstraint("points_cost > 0", name="points_cost_positive"),
        CheckConstraint("kind IN ('product', 'service', 'coupon')", name="kind_known"),
    )

    reward_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    points_cost: Mapped[int] = mapped_column(Integer, nullable=False)
    stock: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Redemption(Base):
    """Points spent on a reward or as an order discount; the lots taken are its ledger entries."""

    __tablename__ = "redemptions"
    __table_args__ = (
        Index("ix_redemptions_member", "member_id", "created_at"),
        CheckConstraint("points > 0", name="points_positive"),
    )

    redemption_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id", onupdate="CASCADE"), nullable=False
    )
    reward_id: Mapped[str | None] = mapped_column(Text, ForeignKey("rewards.reward_id"))
    quantity: Mapped[int | None] = mapped_column(Integer)
    order_id: Mapped[str | None] = mapped_column(String(128))
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # completed / cancelled
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_response: Mapped[dict[str, object] | None] = mapped_column(JSONB)


rewards = cast(Table, Reward.__table__)
redemptions = cast(Table, Redemption.__table__)
