"""Idempotency-Keys per caller and route (the shared store); a member's interactions by time

Issue #15 ("Trust at the edges"): a key was the key alone, so one caller could claim
another caller's key first and make its write answer 409. The table becomes the
platform's one store (loyalty_shared.idempotency): primary key (scope, caller, key),
scope = method and route template, caller = who sent it (API key name or the member of a
member token).

The old rows are dropped, not migrated: they never recorded who sent them, so any owner
given to them would be a guess (a wrong guess keeps the bug for their lifetime, or
answers a caller with another caller's write). They are a replay cache kept 7 days, not
a record: the ledger keeps every write under its own natural key.

ix_interactions_member_time: the daily interaction limit counts one member's
interactions of one local day.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created_at() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
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
    op.create_index(
        "ix_interactions_member_time", "interactions", ["member_id", "occurred_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_interactions_member_time", table_name="interactions")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        "ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"], unique=False
    )
