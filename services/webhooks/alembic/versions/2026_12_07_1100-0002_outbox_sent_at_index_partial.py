"""outbox: ix_outbox_sent_at only over sent rows

See loyalty_shared.tables.outbox_sent_at_index_partial (issue #18).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 11:00:00
"""

from collections.abc import Sequence

from alembic import op

from loyalty_shared.tables import outbox_sent_at_index_full, outbox_sent_at_index_partial

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    outbox_sent_at_index_partial(op.get_bind())


def downgrade() -> None:
    outbox_sent_at_index_full(op.get_bind())
