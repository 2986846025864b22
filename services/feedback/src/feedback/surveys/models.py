from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from feedback.db import Base


class Survey(Base):
    __tablename__ = "surveys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    allow_multiple_responses: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    open_complaint_for_detractors: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False
    )
    # who it is addressed to: "invited" (the members invited to it) or "members" (every member)
    audience: Mapped[str] = mapped_column(String(16), nullable=False, server_default="invited")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class SurveyResponse(Base):
    __tablename__ = "survey_responses"
    __table_args__ = (Index("ix_survey_responses_member_submitted", "member_id", "submitted_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survey_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("surveys.id", ondelete="CASCADE"), nullable=False, index=True
    )
    member_id: Mapped[str] = mapped_column(String(128), nullable=False)
    # "<survey>:<member>" when the survey takes one response per member; NULL otherwise
    once_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    complaint_id: Mapped[str | None] = mapped_column(String(36))
    order_id: Mapped[str | None] = mapped_column(String(128))
    answers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    nps: Mapped[int | None] = mapped_column(Integer)
    csat: Mapped[int | None] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SurveyAnswer(Base):
    """One answered question (skipped ones have no row): what the metrics aggregate."""

    __tablename__ = "survey_answers"
    __table_args__ = (Index("ix_survey_answers_metric_submitted", "metric", "submitted_at"),)

    response_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("survey_responses.id", ondelete="CASCADE"), primary_key=True
    )
    question_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(36), nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    metric: Mapped[str | None] = mapped_column(String(16))
    factor: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[int | None] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SurveyInvitation(Base):
    """A survey addressed to one member (about a complaint or an order, or neither), pending
    until the member answers the survey."""

    __tablename__ = "survey_invitations"
    __table_args__ = (
        # one pending invitation per survey, member and subject (inviting again is a no-op)
        Index(
            "uq_survey_invitations_pending",
            "dedupe_key",
            unique=True,
            postgresql_where=text("answered_response_id IS NULL"),
        ),
        Index("ix_survey_invitations_member", "member_id", "invited_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survey_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("surveys.id", ondelete="CASCADE"), nullable=False, index=True
    )
    member_id: Mapped[str] = mapped_column(String(128), nullable=False)
    complaint_id: Mapped[str | None] = mapped_column(String(36))
    order_id: Mapped[str | None] = mapped_column(String(128))
    # "<survey>|<member>|<complaint or ''>|<order or ''>"
    dedupe_key: Mapped[str] = mapped_column(String(400), nullable=False)
    invited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    invited_by: Mapped[str | None] = mapped_column(String(128))
    answered_response_id: Mapped[str | None] = mapped_column(String(36))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
