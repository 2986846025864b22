from datetime import datetime

from sqlalchemy import DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from feedback.db import Base


class OrderFact(Base):
    """Orders as points reports them (order.recorded / order.refunded): the complaint-rate base."""

    __tablename__ = "order_facts"
    __table_args__ = (Index("ix_order_facts_occurred_at", "occurred_at"),)

    order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
