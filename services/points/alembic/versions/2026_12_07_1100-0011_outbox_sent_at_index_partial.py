"""outbox: ix_outbox_sent_at only over sent rows

Its users are the relay's prune (sent rows older than the retention) and its replay after
a broker lost its data (every sent row): both ask for sent_at IS NOT NULL. Unsent rows
are found by ix_outbox_unsent. The full index had an entry for every unsent row too, a
NULL nobody looks up: one index insert of the four per outbox row, ~11% of the insert's
CPU in the recompute's three million score change events (issue #18).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_outbox_sent_at", table_name="outbox")
    op.create_index(
        "ix_outbox_sent_at",
        "outbox",
        ["sent_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_sent_at", table_name="outbox")
    op.create_index("ix_outbox_sent_at", "outbox", ["sent_at"], unique=False)
