"""The batch refresh: rule tags and segment memberships over all profiles, in set-based SQL.

A recompute (and creating or editing a segment or a rule tag, and a new strategy matrix)
evaluates every active condition over all profiles (``refresh_all``). Tags and segments
whose condition uses a field only the recompute changes (a score, the clock, a batch rule
tag: ``conditions.language.refresh_mode``) are ``batch``: the live refresh leaves them
alone, and their membership is exact as of ``last_computed_at``. Each change writes a
history row (with the clause values that caused it) and a ``loyalty.segment.entered.v1`` /
``left.v1`` event to the outbox.

Lock order, the same as every other writer of these rows: the profiles table
(``lock_profiles_for_bulk_write``, before the rule tags' UPDATE), then the memberships
lock (``MEMBERSHIPS_LOCK``, exclusive here, shared by the live refresh: a segment is
evaluated over profiles and memberships that no live refresh is changing meanwhile),
then the segments one by one in segment_id order.
"""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.contracts.segmentation import SegmentEnteredV1, SegmentLeftV1
from segmentation import events
from segmentation.conditions.compile import compiled
from segmentation.profiles.models import Profile
from segmentation.profiles.service import lock_profiles_for_bulk_write
from segmentation.segments.expressions import reason_expr, rule_tags_expr
from segmentation.segments.live import MEMBERSHIPS_LOCK
from segmentation.segments.models import Segment, SegmentHistory, SegmentMember, Tag

PROFILES: Table = Profile.__table__  # type: ignore[assignment]
P = PROFILES.c

_temp = MetaData()
seg_target = Table("seg_target", _temp, Column("member_id", String(128), primary_key=True))
seg_changes = Table(
    "seg_changes",
    _temp,
    Column("member_id", String(128), primary_key=True),
    Column("action", String(8)),
)
_TEMP_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS seg_target (member_id varchar(128) PRIMARY KEY) "
    "ON COMMIT DROP",
    "CREATE TEMP TABLE IF NOT EXISTS seg_changes (member_id varchar(128) PRIMARY KEY, "
    "action varchar(8)) ON COMMIT DROP",
)


async def refresh_rule_tags(session: AsyncSession) -> None:
    """Every profile's rule tags; only the rows that change are written (after the bulk
    write lock: a consumer may be writing some of them meanwhile)."""
    active = (Tag.kind == "rule") & Tag.archived_at.is_(None)
    tags = (
        await session.execute(select(Tag.name, Tag.condition).where(active).order_by(Tag.name))
    ).all()
    new = rule_tags_expr([(n, c) for n, c in tags if c]) if tags else text("'{}'::text[]")
    await lock_profiles_for_bulk_write(session)
    await session.execute(
        update(PROFILES).where(P.rule_tags.is_distinct_from(new)).values(rule_tags=new)
    )
    await session.execute(update(Tag).where(active).values(last_computed_at=func.now()))


async def _temp_tables(session: AsyncSession) -> None:
    await session.execute(MEMBERSHIPS_LOCK)
    for ddl in _TEMP_DDL:
        await session.execute(text(ddl))
    await session.execute(text("TRUNCATE seg_target, seg_changes"))


async def empty_segment(session: AsyncSession, segment: Segment, trigger: str) -> int:
    """Every member leaves the segment (an archive): a history row and a
    ``loyalty.segment.left.v1`` event each, count 0; returns how many left."""
    await _temp_tables(session)
    await session.execute(
        text(
            "INSERT INTO seg_changes (member_id, action) "
            "SELECT member_id, 'left' FROM segment_members WHERE segment_id = :sid"
        ),
        {"sid": segment.segment_id},
    )
    left = int((await session.execute(text("SELECT count(*) FROM seg_changes"))).scalar_one())
    if left:
        await _write_changes(session, segment, trigger, {"left": left})
    return left


async def refresh_segment(session: AsyncSession, segment: Segment, trigger: str) -> dict[str, int]:
    """Recompute one segment over all profiles in SQL; returns entered/left counts."""
    await _temp_tables(session)
    _, condition = compiled(segment.condition)
    await session.execute(
        insert(seg_target).from_select(["member_id"], select(P.member_id).where(condition))
    )
    sid = segment.segment_id
    await session.execute(
        text(
            "INSERT INTO seg_changes (member_id, action) "
            "SELECT t.member_id, 'entered' FROM seg_target t WHERE NOT EXISTS "
            "(SELECT 1 FROM segment_members m "
            "WHERE m.segment_id = :sid AND m.member_id = t.member_id) "
            "UNION ALL "
            "SELECT m.member_id, 'left' FROM segment_members m WHERE m.segment_id = :sid "
            "AND NOT EXISTS (SELECT 1 FROM seg_target t WHERE t.member_id = m.member_id)"
        ),
        {"sid": sid},
    )
    counts: dict[str, int] = dict(
        (
            await session.execute(text("SELECT action, count(*) FROM seg_changes GROUP BY action"))
        ).all()
    )
    if not counts:
        await session.execute(
            update(Segment).where(Segment.segment_id == sid).values(last_computed_at=func.now())
        )
        return {"entered": 0, "left": 0}
    await _write_changes(session, segment, trigger, counts)
    return {"entered": int(counts.get("entered", 0)), "left": int(counts.get("left", 0))}


async def _write_changes(
    session: AsyncSession, segment: Segment, trigger: str, counts: dict[str, int]
) -> None:
    """Apply ``seg_changes`` to the memberships, with their history, events and count."""
    sid = segment.segment_id
    await session.execute(
        text(
            "INSERT INTO segment_members (segment_id, member_id, entered_at) "
            "SELECT :sid, member_id, now() FROM seg_changes WHERE action = 'entered'"
        ),
        {"sid": sid},
    )
    await session.execute(
        text(
            "DELETE FROM segment_members m USING seg_changes c WHERE m.segment_id = :sid "
            "AND c.member_id = m.member_id AND c.action = 'left'"
        ),
        {"sid": sid},
    )
    joined = seg_changes.join(
        Profile.__table__, P.member_id == seg_changes.c.member_id, isouter=True
    )
    await session.execute(
        insert(SegmentHistory).from_select(
            ["segment_id", "member_id", "action", "at", "trigger", "reason"],
            select(
                literal(sid),
                seg_changes.c.member_id,
                seg_changes.c.action,
                func.now(),
                literal(trigger),
                reason_expr(segment.condition),
            ).select_from(joined),
        )
    )
    for action, model in (("entered", SegmentEnteredV1), ("left", SegmentLeftV1)):
        if counts.get(action):
            await events.publish_rows(
                session,
                model,
                select(
                    literal(sid).label("segment_id"),
                    literal(segment.name).label("segment_name"),
                    seg_changes.c.member_id,
                    func.now().label("at"),
                    literal(trigger).label("trigger"),
                ).where(seg_changes.c.action == action),
            )
    await session.execute(
        update(Segment)
        .where(Segment.segment_id == sid)
        .values(
            last_computed_at=func.now(),
            member_count=select(func.count())
            .select_from(SegmentMember)
            .where(SegmentMember.segment_id == sid)
            .scalar_subquery(),
        )
    )


async def refresh_all(session: AsyncSession, trigger: str) -> dict[str, dict[str, int]]:
    """Rule tags, then every active segment in segment_id order (the one lock order)."""
    await refresh_rule_tags(session)
    out: dict[str, dict[str, int]] = {}
    segments = await session.execute(
        select(Segment).where(Segment.archived_at.is_(None)).order_by(Segment.segment_id)
    )
    for segment in segments.scalars():
        out[segment.segment_id] = await refresh_segment(session, segment, trigger)
    return out
