from datetime import datetime

from sqlalchemy import DateTime, String, func
from sqlalchemy.orm import Mapped, mapped_column

from feedback.db import Base


class MemberProjection(Base):
    """Feedback's own view of a member's tier and value tier, folded from other services' events."""

    __tablename__ = "member_projection"

    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tier: Mapped[str | None] = mapped_column(String(64))
    tier_as_of: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    value_tier: Mapped[str | None] = mapped_column(String(16), index=True)
    value_tier_as_of: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
