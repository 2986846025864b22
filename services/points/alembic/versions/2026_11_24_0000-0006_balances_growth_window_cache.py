"""balances: the rolling-window growth value's cache (growth_cache_start, _sum, _entry_id)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 00:00:00

Existing rows start without a cache (start NULL): the next order of each member adds up
its window once and fills it. Adding the columns rewrites nothing (constant defaults).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('balances', sa.Column('growth_cache_start', sa.DateTime(timezone=True)))
    op.add_column(
        'balances',
        sa.Column('growth_cache_sum', sa.BigInteger(), server_default='0', nullable=False),
    )
    op.add_column(
        'balances',
        sa.Column('growth_cache_entry_id', sa.BigInteger(), server_default='0', nullable=False),
    )


def downgrade() -> None:
    op.drop_column('balances', 'growth_cache_entry_id')
    op.drop_column('balances', 'growth_cache_sum')
    op.drop_column('balances', 'growth_cache_start')
