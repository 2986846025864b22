from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from feedback.db import Base


class BusinessCalendar(Base):
    """Working hours per weekday in a timezone, with holidays; SLA clocks may run on one."""

    __tablename__ = "business_calendars"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    # {"mon": [["09:00", "18:00"]], ...}; a missing weekday is a day off
    hours: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    holidays: Mapped[list[str]] = mapped_column(JSONB, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class SlaPolicy(Base):
    """One SLA rule: which complaints it matches and the clocks it sets.

    Every active policy whose match columns agree (NULL = any) applies; each
    clock takes the shortest value among them, so a tier policy can only make
    a clock shorter. Calendar and pausing come from the matching policy with
    the highest priority.
    """

    __tablename__ = "sla_policies"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    match_kind: Mapped[str | None] = mapped_column(String(16))
    match_channel_class: Mapped[str | None] = mapped_column(String(16))
    match_tier: Mapped[str | None] = mapped_column(String(64))
    match_value_tier: Mapped[str | None] = mapped_column(String(16))
    match_severity: Mapped[str | None] = mapped_column(String(16))
    first_response_minutes: Mapped[int | None] = mapped_column(Integer)
    resolution_minutes: Mapped[int | None] = mapped_column(Integer)
    escalated_resolution_minutes: Mapped[int | None] = mapped_column(Integer)
    calendar_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("business_calendars.id", ondelete="RESTRICT")
    )
    pausable: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    goodwill_points: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class SlaBreach(Base):
    """A clock that ran past its deadline; unique per (complaint, clock, cycle): published once."""

    __tablename__ = "sla_breaches"
    __table_args__ = (UniqueConstraint("complaint_id", "clock", "cycle"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    complaint_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("complaints.id", ondelete="CASCADE"), nullable=False, index=True
    )
    member_id: Mapped[str] = mapped_column(String(128), nullable=False)
    clock: Mapped[str] = mapped_column(String(32), nullable=False)
    cycle: Mapped[int] = mapped_column(Integer, nullable=False)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    goodwill_points: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
