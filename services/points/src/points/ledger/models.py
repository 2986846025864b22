"""Ledger tables: append-only entries, lots (every credit, with its own expiry), cached balances.

How the numbers relate (checked by the stateful test after every step):

- ``balances.available == sum(entries.points)``
- ``balances.pending == sum(entries.pending_delta)`` ``== sum(remaining of pending lots)``
- ``balances.debt == sum(entries.debt_delta)``
- a lot's ``remaining == sum(points + pending_delta + debt_delta)`` of its entries
- ``available + pending == sum(remaining of open lots) - debt``
"""

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from points.db import Base

# entry types
EARN = "earn"
PENDING = "pending"
MATURE = "mature"
REDEEM = "redeem"
CANCEL_REDEEM = "cancel_redeem"
REFUND_REVERSAL = "refund_reversal"
EXPIRE = "expire"
ADJUST = "adjust"
DEBT_REPAYMENT = "debt_repayment"
ENTRY_TYPES = (
    EARN,
    PENDING,
    MATURE,
    REDEEM,
    CANCEL_REDEEM,
    REFUND_REVERSAL,
    EXPIRE,
    ADJUST,
    DEBT_REPAYMENT,
)

# lot statuses
LOT_PENDING = "pending"
LOT_AVAILABLE = "available"
LOT_EXPIRED = "expired"


class Balance(Base):
    """Cached balances, updated in the same transaction as the entries they summarise.

    ``available`` goes negative only by a debt (a refund of points already spent):
    then ``available == -debt`` and future credits repay the debt first.
    """

    __tablename__ = "balances"
    __table_args__ = (
        CheckConstraint("pending >= 0", name="pending_not_negative"),
        CheckConstraint("debt >= 0", name="debt_not_negative"),
    )

    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id", onupdate="CASCADE"), primary_key=True
    )
    available: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    pending: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    growth_value: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    debt: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # The rolling-window growth value, kept so that an order need not add up the member's
    # whole window (``ledger.window_growth``): ``growth_cache_sum`` is the sum of
    # ``growth_delta`` over the member's entries with ``id <= growth_cache_entry_id`` and
    # ``occurred_at >= growth_cache_start``. Entries written since are found by id.
    growth_cache_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    growth_cache_sum: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    growth_cache_entry_id: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default="0"
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Lot(Base):
    """One credit of points; spending consumes the lots that expire first (FIFO)."""

    __tablename__ = "lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_within_points"),
        Index("ix_lots_member_open", "member_id", "earned_at", "id"),
        Index(
            "ix_lots_member_fifo",
            "member_id",
            "expires_at",
            "earned_at",
            "id",
            postgresql_where=text("status = 'available' AND remaining > 0"),
        ),
        Index("ix_lots_maturing", "available_at", postgresql_where=text("status = 'pending'")),
        Index(
            "ix_lots_expiring",
            "expires_at",
            postgresql_where=text("status = 'available' AND remaining > 0"),
        ),
        Index("ix_lots_source", "source_type", "source_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id", onupdate="CASCADE"), nullable=False
    )
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    remaining: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # pending/available/expired
    source_type: Mapped[str] = mapped_column(String(32), nullable=False)
    source_id: Mapped[str] = mapped_column(Text, nullable=False)
    earned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LedgerEntry(Base):
    """Append-only: a correction is a new entry, never an update.

    ``points`` moves ``available``, ``pending_delta`` moves ``pending`` and
    ``debt_delta`` moves ``debt``; their sum is what the entry did to its lot.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_member", "member_id", "id"),
        Index("ix_ledger_entries_source", "source_type", "source_id"),
        Index("ix_ledger_entries_member_time", "member_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("members.member_id", onupdate="CASCADE"), nullable=False
    )
    entry_type: Mapped[str] = mapped_column(String(32), nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    pending_delta: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    debt_delta: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    lot_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("lots.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    source_type: Mapped[str] = mapped_column(String(32), nullable=False)
    source_id: Mapped[str] = mapped_column(Text, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    operator: Mapped[str | None] = mapped_column(Text)
    # what this entry adds to growth value (summed over the ladder's rolling window)
    growth_delta: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # how an order's points were made: base, tier bonus, campaigns (orders only)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


balances = cast(Table, Balance.__table__)
lots = cast(Table, Lot.__table__)
entries = cast(Table, LedgerEntry.__table__)
