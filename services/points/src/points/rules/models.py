"""One row per action type; seeded by the migration with every known action."""

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from points.db import Base


class EarningRuleRow(Base):
    __tablename__ = "earning_rules"
    __table_args__ = (
        CheckConstraint("points >= 0", name="points_not_negative"),
        CheckConstraint("daily_cap IS NULL OR daily_cap >= 0", name="daily_cap_not_negative"),
        CheckConstraint("monthly_cap IS NULL OR monthly_cap >= 0", name="monthly_cap_not_negative"),
    )

    action: Mapped[str] = mapped_column(String(32), primary_key=True)
    points: Mapped[int] = mapped_column(Integer, nullable=False)
    daily_cap: Mapped[int | None] = mapped_column(Integer)
    monthly_cap: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    counts_toward_growth: Mapped[bool] = mapped_column(Boolean, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
