"""Surveys addressed to members: a survey's audience and invitations

Issue #16 ("the member's own app"): a member token lists the surveys addressed to it and
not yet answered (GET /v1/members/{id}/surveys) and answers only those.
- surveys.audience: "invited" (the members invited to it; every survey made before this
  migration, so none is suddenly shown to every member) or "members" (every member).
- survey_invitations: a survey addressed to one member, about a complaint, an order or
  neither; pending until the member answers the survey (answered_response_id). One pending
  invitation per survey, member and subject (a partial unique index on dedupe_key).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "surveys",
        sa.Column("audience", sa.String(length=16), server_default="invited", nullable=False),
    )
    op.create_table(
        "survey_invitations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("survey_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=128), nullable=False),
        sa.Column("complaint_id", sa.String(length=36), nullable=True),
        sa.Column("order_id", sa.String(length=128), nullable=True),
        sa.Column("dedupe_key", sa.String(length=400), nullable=False),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("invited_by", sa.String(length=128), nullable=True),
        sa.Column("answered_response_id", sa.String(length=36), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["survey_id"],
            ["surveys.id"],
            name=op.f("fk_survey_invitations_survey_id_surveys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_invitations")),
    )
    op.create_index(
        "uq_survey_invitations_pending",
        "survey_invitations",
        ["dedupe_key"],
        unique=True,
        postgresql_where=sa.text("answered_response_id IS NULL"),
    )
    op.create_index(
        "ix_survey_invitations_member",
        "survey_invitations",
        ["member_id", "invited_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_survey_invitations_survey_id"),
        "survey_invitations",
        ["survey_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_survey_invitations_survey_id"), table_name="survey_invitations")
    op.drop_index("ix_survey_invitations_member", table_name="survey_invitations")
    op.drop_index("uq_survey_invitations_pending", table_name="survey_invitations")
    op.drop_table("survey_invitations")
    op.drop_column("surveys", "audience")
