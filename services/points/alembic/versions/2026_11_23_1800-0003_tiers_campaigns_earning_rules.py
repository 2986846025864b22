"""tier ladder, campaigns, earning rules (seeded with the default ladder and rules)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 18:00:00
"""
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _benefits(discount: str, **flags: bool) -> dict[str, object]:
    names = ("free_shipping", "birthday_gift", "early_access", "priority_service",
             "dedicated_advisor", "home_service")
    return {"discount_percent": discount, **{n: flags.get(n, False) for n in names}}


DEFAULT_LADDER = {
    "tiers": [
        {"code": "regular", "name": "Regular", "threshold": 0, "multiplier": "1",
         "benefits": _benefits("0")},
        {"code": "silver", "name": "Silver", "threshold": 2000, "multiplier": "1.2",
         "benefits": _benefits("2", free_shipping=True, birthday_gift=True)},
        {"code": "gold", "name": "Gold", "threshold": 10000, "multiplier": "1.5",
         "benefits": _benefits("5", free_shipping=True, birthday_gift=True, early_access=True,
                               priority_service=True, dedicated_advisor=True)},
        {"code": "diamond", "name": "Diamond", "threshold": 50000, "multiplier": "2",
         "benefits": _benefits("8", free_shipping=True, birthday_gift=True, early_access=True,
                               priority_service=True, dedicated_advisor=True,
                               home_service=True)},
    ],
    "rolling_window_days": 365,
    "growth_point_types": ["purchase", "action"],
    "downgrade_grace_days": 30,
    "evaluation_policy": "anniversary",
}

# action, points, daily cap, monthly cap, enabled, counts toward growth
DEFAULT_RULES = [
    ("check_in", 5, 5, 155, True, False),
    ("review", 10, 30, 300, True, False),
    ("share", 2, 10, 100, True, False),
    ("activity", 20, 40, 200, True, False),
    ("survey", 20, 40, 200, True, False),
    ("birthday", 200, None, None, True, False),
    ("referral_referrer", 100, None, 1000, True, False),
    ("referral_new_member", 50, None, None, True, False),
    ("login", 1, 1, 31, False, False),
    ("page_view", 1, 5, 50, False, False),
]


def upgrade() -> None:
    tier_ladder = op.create_table('tier_ladder',
    sa.Column('id', sa.SmallInteger(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('ladder', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_tier_ladder_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_ladder'))
    )
    op.create_table('campaigns',
    sa.Column('campaign_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('stacking', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('eligible_tiers', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('categories', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('multiplier', sa.Numeric(precision=6, scale=3), nullable=True),
    sa.Column('bonus_points', sa.Integer(), nullable=True),
    sa.Column('threshold', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_campaigns_ends_after_start')),
    sa.CheckConstraint("kind IN ('category_multiplier', 'first_order_bonus', 'spend_threshold_bonus', 'fixed_bonus')", name=op.f('ck_campaigns_known_kind')),
    sa.CheckConstraint("stacking IN ('stackable', 'exclusive')", name=op.f('ck_campaigns_known_stacking')),
    sa.PrimaryKeyConstraint('campaign_id', name=op.f('pk_campaigns'))
    )
    op.create_index('ix_campaigns_window', 'campaigns', ['starts_at', 'ends_at'], unique=False, postgresql_where=sa.text('active'))
    earning_rules = op.create_table('earning_rules',
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('daily_cap', sa.Integer(), nullable=True),
    sa.Column('monthly_cap', sa.Integer(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('counts_toward_growth', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('daily_cap IS NULL OR daily_cap >= 0', name=op.f('ck_earning_rules_daily_cap_not_negative')),
    sa.CheckConstraint('monthly_cap IS NULL OR monthly_cap >= 0', name=op.f('ck_earning_rules_monthly_cap_not_negative')),
    sa.CheckConstraint('points >= 0', name=op.f('ck_earning_rules_points_not_negative')),
    sa.PrimaryKeyConstraint('action', name=op.f('pk_earning_rules'))
    )
    op.bulk_insert(tier_ladder, [{"id": 1, "version": 1, "ladder": json.loads(json.dumps(DEFAULT_LADDER))}])
    op.bulk_insert(earning_rules, [
        {"action": a, "points": p, "daily_cap": d, "monthly_cap": m, "enabled": e,
         "counts_toward_growth": g}
        for a, p, d, m, e, g in DEFAULT_RULES
    ])


def downgrade() -> None:
    op.drop_table('earning_rules')
    op.drop_index('ix_campaigns_window', table_name='campaigns', postgresql_where=sa.text('active'))
    op.drop_table('campaigns')
    op.drop_table('tier_ladder')
