"""Tags and segments: refresh mode from the fields used, edits, archive, definition history

Issue #16 ("Segment truths"): a rule tag gets a refresh mode like a segment (batch when
its condition uses a field only the recompute changes), tags and segments can be edited
and archived (``archived_at``; a segment's name is unique among the active ones), and
every version of a definition is kept in ``definition_history``. The existing rule tags
and segments are classified again with the rule of this revision (a score field, a
clock field or a batch rule tag makes a condition batch), and each gets its version 1.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 22:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, *, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    default = None if nullable else sa.text("now()")
    return sa.Column(name, sa.DateTime(timezone=True), server_default=default, nullable=nullable)


def upgrade() -> None:
    op.add_column(
        "tags",
        sa.Column("refresh_mode", sa.String(length=8), server_default="live", nullable=False),
    )
    op.add_column("tags", _at("updated_at", nullable=False))
    op.add_column("tags", _at("last_computed_at", nullable=True))
    op.add_column("tags", _at("archived_at", nullable=True))
    op.add_column("segments", _at("updated_at", nullable=False))
    op.add_column("segments", _at("archived_at", nullable=True))
    op.drop_constraint(op.f("uq_segments_name"), "segments", type_="unique")
    op.create_index(
        "uq_segments_name_active",
        "segments",
        ["name"],
        unique=True,
        postgresql_where=sa.text("archived_at IS NULL"),
    )
    op.create_table(
        "definition_history",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("condition", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("refresh_mode", sa.String(length=8), nullable=False),
        _at("at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_definition_history")),
        sa.UniqueConstraint("kind", "key", "version", name=op.f("uq_definition_history_kind")),
    )
    _classify_again()
    op.execute(
        "UPDATE tags SET updated_at = created_at, "
        "last_computed_at = CASE WHEN kind = 'rule' THEN now() END"
    )
    op.execute("UPDATE segments SET updated_at = created_at")
    op.execute(
        "INSERT INTO definition_history "
        "(kind, key, version, change, name, condition, description, refresh_mode, at) "
        "SELECT 'tag', name, 1, 'created', name, condition, description, refresh_mode, "
        "created_at FROM tags"
    )
    op.execute(
        "INSERT INTO definition_history "
        "(kind, key, version, change, name, condition, description, refresh_mode, at) "
        "SELECT 'segment', segment_id, 1, 'created', name, condition, description, "
        "refresh_mode, created_at FROM segments"
    )


def _classify_again() -> None:
    """The refresh mode of every rule tag, then of every segment (which may ask for a batch
    rule tag), with the service's parser; a condition it cannot read keeps its mode."""
    from segmentation.conditions.fields import FIELDS, RULE_TAG_FIELDS
    from segmentation.conditions.language import ConditionError, parse, refresh_mode

    bind = op.get_bind()
    batch_tags: set[str] = set()
    for name, condition in bind.execute(
        sa.text("SELECT name, condition FROM tags WHERE kind = 'rule'")
    ).all():
        try:
            if refresh_mode(parse(condition, allowed=RULE_TAG_FIELDS)) == "batch":
                batch_tags.add(name)
        except ConditionError:
            continue
    bind.execute(
        sa.text("UPDATE tags SET refresh_mode = 'batch' WHERE name = ANY(:names)"),
        {"names": sorted(batch_tags)},
    )
    for segment_id, condition in bind.execute(
        sa.text("SELECT segment_id, condition FROM segments")
    ).all():
        try:
            mode = refresh_mode(parse(condition, allowed=FIELDS), frozenset(batch_tags))
        except ConditionError:
            continue
        bind.execute(
            sa.text("UPDATE segments SET refresh_mode = :mode WHERE segment_id = :id"),
            {"mode": mode, "id": segment_id},
        )


def downgrade() -> None:
    op.drop_table("definition_history")
    op.drop_index("uq_segments_name_active", table_name="segments")
    op.create_unique_constraint(op.f("uq_segments_name"), "segments", ["name"])
    op.drop_column("segments", "archived_at")
    op.drop_column("segments", "updated_at")
    op.drop_column("tags", "archived_at")
    op.drop_column("tags", "last_computed_at")
    op.drop_column("tags", "updated_at")
    op.drop_column("tags", "refresh_mode")
