"""Recompute jobs, fitted CLV models and editable analytics configuration."""

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from segmentation.db import Base


class Job(Base):
    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False
    )  # queued/running/succeeded/failed
    progress: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    step: Mapped[str | None] = mapped_column(String(64))
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ClvModel(Base):
    """BG/NBD + Gamma-Gamma parameters fitted at one recompute."""

    __tablename__ = "clv_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    fitted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    customers: Mapped[int] = mapped_column(Integer, nullable=False)
    repeat_customers: Mapped[int] = mapped_column(Integer, nullable=False)
    bgnbd: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    gamma_gamma: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    note: Mapped[str | None] = mapped_column(Text)


class ConfigEntry(Base):
    """Ops-editable documents (loyalty AHP matrix, contact policy), one row per key."""

    __tablename__ = "config_entries"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
