"""Recompute jobs, fitted CLV models and editable analytics configuration."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, Numeric, String, Text, func, text
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
    # refreshed by the runner every few seconds while the job is queued or running;
    # a job whose heartbeat is older than SEGMENTATION_JOB_STALE_AFTER_SECONDS is failed
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # POST /v1/analytics/recompute with Idempotency-Key: the same key and body replay the job
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # at most one running job per kind: two recomputes never run at the same time
        Index(
            "ux_jobs_one_running_per_kind",
            "kind",
            unique=True,
            postgresql_where=text("status = 'running'"),
        ),
        Index(
            "ux_jobs_idempotency_key",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )


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


class SurveyScore(Base):
    """One survey answer's scores (``loyalty.survey.completed.v1``), for NPS / CSAT per period."""

    __tablename__ = "survey_scores"

    response_id: Mapped[str] = mapped_column(Text, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False)
    nps: Mapped[int | None] = mapped_column(Integer)  # 0..10
    csat: Mapped[Decimal | None] = mapped_column(Numeric(4, 2))  # 1..5
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        Index("ix_survey_scores_submitted_at", "submitted_at"),
        Index("ix_survey_scores_member_id", "member_id"),
    )


class ComplaintFact(Base):
    """A complaint as the feedback service's events describe it (complaint rate, SLA, FCR,
    follow-up coverage per period). Times keep the earliest seen; the status the newest."""

    __tablename__ = "complaint_facts"

    complaint_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), nullable=False)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str | None] = mapped_column(String(32))
    status_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_contact_resolution: Mapped[bool | None] = mapped_column(Boolean)
    first_response_breached: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default="false"
    )
    resolution_breached: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default="false"
    )
    follow_up_completed: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default="false"
    )

    __table_args__ = (
        Index("ix_complaint_facts_opened_at", "opened_at"),
        Index("ix_complaint_facts_first_resolved_at", "first_resolved_at"),
        Index("ix_complaint_facts_member_id", "member_id"),
    )
