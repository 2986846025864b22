from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Numeric, String, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from points.db import Base


class Order(Base):
    """A completed order as the storefront reported it, with the answer we gave (for replays)."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_member", "member_id", "occurred_at"),)

    order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id", onupdate="CASCADE"), nullable=False
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    discount_amount: Mapped[Decimal] = mapped_column(
        Numeric(14, 2), nullable=False, server_default="0"
    )
    coupon_used: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(Text)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    points_earned: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # the part of points_earned that counted toward growth value (refunds reverse it pro rata)
    growth_points: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


orders = cast(Table, Order.__table__)
