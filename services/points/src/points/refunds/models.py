"""Refunds of recorded orders: one row per refund id (the natural idempotency key)."""

from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Numeric, String, Table, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from points.db import Base


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (Index("ix_refunds_order", "order_id"),)

    refund_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    order_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("orders.order_id"), nullable=False
    )
    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id", onupdate="CASCADE"), nullable=False
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    points_reversed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


refunds = cast(Table, Refund.__table__)
