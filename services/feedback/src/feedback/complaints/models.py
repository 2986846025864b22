from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from feedback.db import Base


class Complaint(Base):
    __tablename__ = "complaints"
    __table_args__ = (
        Index("ix_complaints_status_created", "status", "created_at", "id"),
        Index("ix_complaints_owner_created", "owner_id", "created_at", "id"),
        # a member's complaints of the last 24 hours (the per-member daily limit)
        Index("ix_complaints_member_created", "member_id", "created_at"),
        Index(
            "ix_complaints_next_due",
            "next_due_at",
            postgresql_where=text("next_due_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    channel: Mapped[str] = mapped_column(String(32), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, server_default="complaint")
    category: Mapped[str] = mapped_column(String(64), nullable=False)
    cause: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, nullable=False)
    order_id: Mapped[str | None] = mapped_column(String(128))
    product_ref: Mapped[str | None] = mapped_column(String(128))
    # the severity the SLA uses: ops' (given by ops, or set later with an action), else the
    # default; what a member or storefront said is only ``reported_severity`` (a hint)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    reported_severity: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    opened_by: Mapped[str | None] = mapped_column(String(128))
    owner_id: Mapped[str | None] = mapped_column(String(128))
    handed_over: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    # the member as feedback's projection saw them when the complaint was opened
    member_tier: Mapped[str | None] = mapped_column(String(64))
    member_value_tier: Mapped[str | None] = mapped_column(String(16))
    # the SLA the complaint was opened under (a later policy change does not move its clocks)
    sla_policy_ids: Mapped[list[str]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    calendar_id: Mapped[str | None] = mapped_column(String(64))
    pausable: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    first_response_minutes: Mapped[int | None] = mapped_column(Integer)
    resolution_minutes: Mapped[int | None] = mapped_column(Integer)
    escalated_resolution_minutes: Mapped[int | None] = mapped_column(Integer)
    goodwill_points: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    first_response_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    resolution_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    first_responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused_seconds: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    # resolution cycle: 0 for the first, +1 per reopen (a breach is counted once per cycle)
    cycle: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    reopen_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    first_response_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    breached: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    # the earliest deadline of a running clock; NULL when no clock runs (paused, resolved)
    next_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ComplaintAction(Base):
    """History: one row per action taken on a complaint (who, what, when, why)."""

    __tablename__ = "complaint_actions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    complaint_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("complaints.id", ondelete="CASCADE"), nullable=False, index=True
    )
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32), nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
