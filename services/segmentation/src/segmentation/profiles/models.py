from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Integer, Numeric, String, func
from sqlalchemy.orm import Mapped, mapped_column

from segmentation.db import Base


class Profile(Base):
    """The 360 view of one member, built only from events."""

    __tablename__ = "profiles"

    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    enrolled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tier: Mapped[str | None] = mapped_column(String(64))
    order_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    total_spend: Mapped[Decimal] = mapped_column(
        Numeric(16, 2), nullable=False, server_default="0"
    )
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    points_earned: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
