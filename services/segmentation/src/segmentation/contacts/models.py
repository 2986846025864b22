"""Marketing contacts made to members and each member's channel preferences."""

from datetime import datetime

from sqlalchemy import DateTime, Index, String, Text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from segmentation.db import Base


class Contact(Base):
    __tablename__ = "contacts"

    contact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False)
    channel: Mapped[str] = mapped_column(String(32), nullable=False)
    campaign: Mapped[str | None] = mapped_column(String(128))
    contacted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_contacts_member_time", "member_id", "contacted_at"),)


class ContactPreference(Base):
    __tablename__ = "contact_preferences"

    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    preferred_channels: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    opted_out_channels: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
