from datetime import date, datetime

from sqlalchemy import Date, DateTime, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from points.db import Base


class Member(Base):
    __tablename__ = "members"

    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    birthday: Mapped[date | None] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(Text, nullable=False)
    referral_code: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    referred_by: Mapped[str | None] = mapped_column(String(128))
    tier: Mapped[str] = mapped_column(String(64), nullable=False, server_default="regular")
    enrolled_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    last_evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
