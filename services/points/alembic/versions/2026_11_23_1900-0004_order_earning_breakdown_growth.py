"""order earning breakdown, growth per entry (rolling window), check-ins, action credits

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'ledger_entries',
        sa.Column('growth_delta', sa.BigInteger(), server_default='0', nullable=False),
    )
    op.add_column(
        'ledger_entries', sa.Column('details', postgresql.JSONB(astext_type=sa.Text()))
    )
    op.create_index(
        'ix_ledger_entries_member_time', 'ledger_entries', ['member_id', 'occurred_at']
    )
    op.add_column(
        'orders', sa.Column('growth_points', sa.BigInteger(), server_default='0', nullable=False)
    )
    op.add_column('orders', sa.Column('breakdown', postgresql.JSONB(astext_type=sa.Text())))
    op.add_column('members', sa.Column('erased_at', sa.DateTime(timezone=True)))
    op.add_column('members', sa.Column('last_evaluated_at', sa.DateTime(timezone=True)))
    op.create_table(
        'check_ins',
        sa.Column('member_id', sa.String(length=128), nullable=False),
        sa.Column('local_day', sa.Date(), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('points', sa.BigInteger(), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.member_id']),
        sa.PrimaryKeyConstraint('member_id', 'local_day'),
    )
    op.create_table(
        'interactions',
        sa.Column('event_id', sa.String(length=128), nullable=False),
        sa.Column('member_id', sa.String(length=128), nullable=False),
        sa.Column('type', sa.String(length=64), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('points', sa.BigInteger(), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('response', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.member_id']),
        sa.PrimaryKeyConstraint('event_id'),
    )
    op.create_index('ix_interactions_member', 'interactions', ['member_id', 'type'])
    # history: until now every purchase credit counted toward growth value
    op.execute(
        "UPDATE ledger_entries SET growth_delta = points + pending_delta "
        "WHERE source_type = 'order' AND entry_type IN ('earn', 'pending')"
    )
    op.execute("UPDATE orders SET growth_points = points_earned")


def downgrade() -> None:
    op.drop_index('ix_interactions_member', table_name='interactions')
    op.drop_table('interactions')
    op.drop_table('check_ins')
    op.drop_column('members', 'last_evaluated_at')
    op.drop_column('members', 'erased_at')
    op.drop_column('orders', 'breakdown')
    op.drop_column('orders', 'growth_points')
    op.drop_index('ix_ledger_entries_member_time', table_name='ledger_entries')
    op.drop_column('ledger_entries', 'details')
    op.drop_column('ledger_entries', 'growth_delta')
