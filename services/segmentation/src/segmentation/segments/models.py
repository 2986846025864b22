"""Tags, saved segments, their current members and the entered/left history."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from segmentation.db import Base


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Tag(Base):
    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)  # manual / rule
    condition: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    # a rule tag: live (kept current by events) or batch (by the recompute); a manual tag: live
    refresh_mode: Mapped[str] = mapped_column(String(8), nullable=False, server_default="live")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    last_computed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Segment(Base):
    __tablename__ = "segments"

    segment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    condition: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    refresh_mode: Mapped[str] = mapped_column(String(8), nullable=False)  # live / batch
    member_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    last_computed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # an archived segment keeps its name in its history; a new one may take it
    __table_args__ = (
        Index(
            "uq_segments_name_active",
            "name",
            unique=True,
            postgresql_where=text("archived_at IS NULL"),
        ),
    )


class SegmentMember(Base):
    __tablename__ = "segment_members"

    segment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_segment_members_member_id", "member_id"),)


class SegmentHistory(Base):
    __tablename__ = "segment_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    segment_id: Mapped[str] = mapped_column(String(64), nullable=False)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(8), nullable=False)  # entered / left
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    trigger: Mapped[str] = mapped_column(String(64), nullable=False)  # event type or "recompute"
    reason: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        Index("ix_segment_history_member", "member_id", "segment_id"),
        Index("ix_segment_history_segment_at", "segment_id", "at"),
    )


class DefinitionChange(Base):
    """Every version of a tag's or a segment's definition (created, updated, archived)."""

    __tablename__ = "definition_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)  # tag / segment
    key: Mapped[str] = mapped_column(String(128), nullable=False)  # segment id / tag's name
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    change: Mapped[str] = mapped_column(String(16), nullable=False)  # created/updated/archived
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    condition: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    refresh_mode: Mapped[str] = mapped_column(String(8), nullable=False)
    at: Mapped[datetime] = _now()

    __table_args__ = (UniqueConstraint("kind", "key", "version"),)
