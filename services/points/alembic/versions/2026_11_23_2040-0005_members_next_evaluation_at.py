"""members.next_evaluation_at: the tier evaluation job reads only members that are due;
birthday index for the birthday job

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 20:40:00

Existing members start unscheduled (NULL); the evaluation job computes their dates in
batches on its first runs (no locks, one UPDATE per batch), then reads only due members.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('members', sa.Column('next_evaluation_at', sa.DateTime(timezone=True)))
    op.create_index(
        'ix_members_next_evaluation',
        'members',
        ['next_evaluation_at', 'member_id'],
        postgresql_where=sa.text('erased_at IS NULL'),
    )
    # the birthday job looks members up by the month and day of their birthday
    op.create_index(
        'ix_members_birthday_md',
        'members',
        [sa.text('EXTRACT(month FROM birthday)'), sa.text('EXTRACT(day FROM birthday)')],
        postgresql_where=sa.text('birthday IS NOT NULL AND erased_at IS NULL'),
    )


def downgrade() -> None:
    op.drop_index(
        'ix_members_birthday_md',
        table_name='members',
        postgresql_where=sa.text('birthday IS NOT NULL AND erased_at IS NULL'),
    )
    op.drop_index(
        'ix_members_next_evaluation',
        table_name='members',
        postgresql_where=sa.text('erased_at IS NULL'),
    )
    op.drop_column('members', 'next_evaluation_at')
