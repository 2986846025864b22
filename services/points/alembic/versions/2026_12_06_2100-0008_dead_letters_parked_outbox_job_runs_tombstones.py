"""dead letters, parked outbox rows, pipeline actions, job runs, erasure tombstones

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 21:00:00

The tables of loyalty_shared.tables.RESILIENCE_TABLES_V1: what the consumers gave up on
(dead_letters), what the broker refused for good (outbox_parked), what ops did about
either (pipeline_actions), each periodic job's last outcome (job_runs) and the keyed
hashes of erased members (erased_members).
"""
from collections.abc import Sequence

from alembic import op

from loyalty_shared.tables import create_resilience_tables_v1, drop_resilience_tables_v1

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_resilience_tables_v1(op.get_bind())


def downgrade() -> None:
    drop_resilience_tables_v1(op.get_bind())
