"""foreign keys to members.member_id follow a renamed member (ON UPDATE CASCADE)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:30:00

Erasure replaces the shop's customer id by a pseudonym (``erased:<keyed hash>``) in the
member's row, and with it in every row of the ledger that points at the member, so the
books still balance and nothing keeps the id.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "balances",
    "lots",
    "ledger_entries",
    "orders",
    "redemptions",
    "refunds",
    "check_ins",
    "interactions",
)


def _recreate(onupdate: str | None) -> None:
    for table in TABLES:
        name = f"fk_{table}_member_id_members"
        op.drop_constraint(name, table, type_="foreignkey")
        op.create_foreign_key(
            name, table, "members", ["member_id"], ["member_id"], onupdate=onupdate
        )


def upgrade() -> None:
    _recreate("CASCADE")


def downgrade() -> None:
    _recreate(None)
