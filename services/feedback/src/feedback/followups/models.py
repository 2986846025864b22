from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from feedback.db import Base


class FollowUp(Base):
    """A follow-up visit (回访): due date, owner, outcome, whether the problem was rectified."""

    __tablename__ = "follow_ups"
    __table_args__ = (Index("ix_follow_ups_status_due", "status", "due_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    # post_resolution | monthly_high_value | churn_risk | survey_detractor
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    # what made it: one follow-up per trigger (a resolution cycle, a month, an event, a response)
    dedupe_key: Mapped[str] = mapped_column(String(300), nullable=False, unique=True)
    complaint_id: Mapped[str | None] = mapped_column(String(36), index=True)
    survey_response_id: Mapped[str | None] = mapped_column(String(36))
    trigger_score: Mapped[int | None] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    owner_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    outcome: Mapped[str | None] = mapped_column(Text)
    rectified: Mapped[bool | None] = mapped_column(Boolean)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_by: Mapped[str | None] = mapped_column(String(128))
    # closed loop: the member's next survey answer after this follow-up
    next_response_id: Mapped[str | None] = mapped_column(String(36))
    next_score: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
