"""Ledger tables: append-only entries, lots (every credit, with its own expiry), cached balances."""

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from points.db import Base


class Balance(Base):
    """Cached balances, updated in the same transaction as the entries they summarise."""

    __tablename__ = "balances"

    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id"), primary_key=True
    )
    available: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    pending: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    growth_value: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Lot(Base):
    """One credit of points; spending consumes the oldest lots first (FIFO)."""

    __tablename__ = "lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_within_points"),
        Index("ix_lots_member_open", "member_id", "earned_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id"), nullable=False
    )
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    remaining: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # pending/available/closed
    source_type: Mapped[str] = mapped_column(String(32), nullable=False)
    source_id: Mapped[str] = mapped_column(Text, nullable=False)
    earned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LedgerEntry(Base):
    """Append-only: a correction is a new entry, never an update."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_member", "member_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id"), nullable=False
    )
    entry_type: Mapped[str] = mapped_column(String(32), nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    lot_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("lots.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    source_type: Mapped[str] = mapped_column(String(32), nullable=False)
    source_id: Mapped[str] = mapped_column(Text, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    operator: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
