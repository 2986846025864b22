"""Check-ins (one per member and local day) and interactions (one per event id)."""

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Index, String, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from points.db import Base


class CheckIn(Base):
    __tablename__ = "check_ins"

    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id", onupdate="CASCADE"), primary_key=True
    )
    local_day: Mapped[date] = mapped_column(Date, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)


class Interaction(Base):
    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_member", "member_id", "type"),
        # a member's interactions of one local day (the daily limit counts them)
        Index("ix_interactions_member_time", "member_id", "occurred_at"),
    )

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id", onupdate="CASCADE"), nullable=False
    )
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)


check_ins = cast(Table, CheckIn.__table__)
interactions = cast(Table, Interaction.__table__)
