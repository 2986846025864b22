"""Idempotency-Keys per caller; a complaint's reported severity; complaints by member and time

Issue #15 ("Trust at the edges"):
- idempotency_keys gets the caller in its primary key (scope, caller, key): one caller's
  key is not another's (loyalty_shared.idempotency). The old rows are dropped: they never
  recorded who sent them, and they are a replay cache kept 7 days, not a record.
- complaints.reported_severity: what a member or storefront said; the SLA uses ops'
  severity (complaints.severity), the default until ops set it.
- ix_complaints_member_created: the per-member daily complaint limit counts one member's
  complaints of the last 24 hours.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.drop_table("idempotency_keys")
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("caller", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("scope", "caller", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        "ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"], unique=False
    )
    op.add_column("complaints", sa.Column("reported_severity", sa.String(length=16), nullable=True))
    op.create_index(
        "ix_complaints_member_created", "complaints", ["member_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_complaints_member_created", table_name="complaints")
    op.drop_column("complaints", "reported_severity")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
