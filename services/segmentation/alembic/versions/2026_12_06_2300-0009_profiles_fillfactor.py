"""profiles: fillfactor 70

Issue #16 (the consumer with 200 rule tags and 20 live segments): a consumer batch
updates a member's profile twice (its events, then its rule tags). With full pages every
new row version went to another page, with an entry in each of the table's three indexes,
and the table bloated to 8 KB per member in the benchmark; with 30% of each page free the
updates stay on the page (HOT): no index entry, and the page is pruned in place. Pages
written from now on keep the room; existing ones when rewritten (``VACUUM FULL profiles``
or pg_repack, at a quiet time: it locks the table).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 23:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE profiles SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE profiles RESET (fillfactor)")
