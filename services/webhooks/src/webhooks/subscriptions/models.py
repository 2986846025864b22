from datetime import datetime

from sqlalchemy import ARRAY, DateTime, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from webhooks.db import Base


class Subscription(Base):
    """Where to POST which event types, and the secrets that sign them (docs/webhooks.md)."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    # active: deliveries go out; paused: they wait (by ops, or after failures: paused_reason)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="active")
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the secret signing now (shown once) and its number; the one before it signs as well
    # until previous_secret_expires_at (a rotation's overlap)
    secret: Mapped[str] = mapped_column(Text, nullable=False)
    secret_key_id: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # deliveries in a row that ended failed (reset by any delivered one)
    failed_deliveries_in_row: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default="0"
    )
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
