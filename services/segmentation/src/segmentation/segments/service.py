"""Tags and segments: definitions, membership kept current, history, explanations.

Memberships change in two ways:
- live: after every consumed event the member's rule tags and every segment's
  condition are evaluated against the member's profile (``refresh_member``);
- batch: a recompute (and creating a segment or a rule tag) evaluates every
  condition over all profiles in set-based SQL (``refresh_all``). Segments whose
  condition depends on the clock (``days_since_*``) are marked ``batch``: their
  membership is exact as of ``last_computed_at``.
Each change writes a history row (with the clause values that caused it) and a
``loyalty.segment.entered.v1`` / ``left.v1`` event to the outbox.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    MetaData,
    String,
    Table,
    Text,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import Conflict, NotFound, Unprocessable
from segmentation import events
from segmentation.conditions.compile import comparison_sql, compiled, field_expr
from segmentation.conditions.language import ConditionError, comparisons, uses_time_window
from segmentation.profiles.models import Profile
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


class InvalidCondition(Unprocessable):
    slug = "invalid-condition"
    title = "Invalid condition"


class SegmentNotFound(NotFound):
    slug = "segment-not-found"
    title = "Segment not found"


class TagNotFound(NotFound):
    slug = "tag-not-found"
    title = "Tag not found"


class DuplicateName(Conflict):
    slug = "name-taken"
    title = "Name already taken"


def validate_condition(condition: str, *, rule_ctx: bool = False, field: str = "condition") -> None:
    try:
        compiled(condition, rule_ctx)
    except ConditionError as exc:
        raise InvalidCondition(
            str(exc),
            errors=[
                {
                    "field": field,
                    "message": exc.message,
                    "type": "condition",
                    "position": exc.position,
                }
            ],
            position=exc.position,
        ) from exc


def _reason_expr(condition: str) -> Any:
    node, _ = compiled(condition)
    pairs: list[Any] = []
    for clause in comparisons(node):
        pairs += [clause.text, comparison_sql(clause)]
    return func.jsonb_build_object("clauses", func.jsonb_build_object(*pairs))


# ---------------------------------------------------------------- live, per member


async def refresh_member(session: AsyncSession, member_id: str, trigger: str) -> None:
    """Bring one member's rule tags and segment memberships up to date with the profile."""
    await refresh_members(session, [member_id], trigger)


async def refresh_members(session: AsyncSession, member_ids: list[str], trigger: str) -> None:
    """The same for many members at once: a few statements whatever their number."""
    if not member_ids:
        return
    rule_tags, segments = await _definitions(session)
    if rule_tags:
        new = _rule_tags_expr([(n, c) for n, c in rule_tags if c])
        await session.execute(
            update(PROFILES)
            .where(P.member_id.in_(member_ids), P.rule_tags.is_distinct_from(new))
            .values(rule_tags=new)
        )
    if not segments:
        return
    flags = (
        await session.execute(
            select(
                P.member_id,
                *[compiled(s.condition)[1].label(f"s{i}") for i, s in enumerate(segments)],
            ).where(P.member_id.in_(member_ids))
        )
    ).all()
    memberships = await session.execute(
        select(SegmentMember.member_id, SegmentMember.segment_id).where(
            SegmentMember.member_id.in_(member_ids)
        )
    )
    current = {(row[0], row[1]) for row in memberships}
    now = (await session.execute(select(func.now()))).scalar_one()
    for i, seg in enumerate(segments):
        entered = [r[0] for r in flags if r[i + 1] and (r[0], seg.segment_id) not in current]
        left = [r[0] for r in flags if not r[i + 1] and (r[0], seg.segment_id) in current]
        if entered or left:
            await _apply_changes(session, seg, entered, left, trigger, now)


_DEFINITIONS = "segmentation.definitions"


async def _definitions(session: AsyncSession) -> tuple[list[Any], list[Any]]:
    """Rule tags and segments, read once per transaction (a consumer batch is one)."""
    cached: tuple[list[Any], list[Any]] | None = session.info.get(_DEFINITIONS)
    if cached is None:
        tags = (
            await session.execute(select(Tag.name, Tag.condition).where(Tag.kind == "rule"))
        ).all()
        segments = (
            await session.execute(select(Segment.segment_id, Segment.name, Segment.condition))
        ).all()
        cached = (list(tags), list(segments))
        session.info[_DEFINITIONS] = cached
    return cached


def forget_definitions(session: AsyncSession) -> None:
    session.info.pop(_DEFINITIONS, None)


def _rule_tags_expr(tags: list[tuple[str, str]]) -> Any:
    from sqlalchemy import case

    cases = [
        case((compiled(cond, True)[1], literal(name, Text)), else_=None) for name, cond in tags
    ]
    return cast(func.array_remove(array(cases, type_=Text), None), ARRAY(Text))  # type: ignore[misc]


async def _apply_changes(
    session: AsyncSession,
    segment: Any,
    entered: list[str],
    left: list[str],
    trigger: str,
    now: datetime,
) -> None:
    """Members entering and leaving one segment: a handful of statements for all of them."""
    sid = segment.segment_id
    changed = entered + left
    reason_rows = await session.execute(
        select(P.member_id, _reason_expr(segment.condition)).where(P.member_id.in_(changed))
    )
    reasons: dict[str, Any] = {row[0]: row[1] for row in reason_rows}
    if entered:
        await session.execute(
            pg_insert(SegmentMember).on_conflict_do_nothing(),
            [{"segment_id": sid, "member_id": m, "entered_at": now} for m in entered],
        )
    if left:
        await session.execute(
            delete(SegmentMember).where(
                SegmentMember.segment_id == sid, SegmentMember.member_id.in_(left)
            )
        )
    actions = [(m, "entered") for m in entered] + [(m, "left") for m in left]
    await session.execute(
        insert(SegmentHistory),
        [
            {
                "segment_id": sid,
                "member_id": m,
                "action": action,
                "at": now,
                "trigger": trigger,
                "reason": reasons.get(m),
            }
            for m, action in actions
        ],
    )
    await session.execute(
        update(Segment)
        .where(Segment.segment_id == sid)
        .values(member_count=Segment.member_count + len(entered) - len(left))
    )
    await events.publish(
        session,
        *[
            events.segmentation_event(
                events.SEGMENT_ENTERED if action == "entered" else events.SEGMENT_LEFT,
                m,
                {
                    "segment_id": sid,
                    "segment_name": segment.name,
                    "member_id": m,
                    "at": now.isoformat(),
                    "trigger": trigger,
                },
            )
            for m, action in actions
        ],
    )


# ---------------------------------------------------------------- batch, all profiles


async def refresh_rule_tags(session: AsyncSession) -> None:
    tags = (await session.execute(select(Tag.name, Tag.condition).where(Tag.kind == "rule"))).all()
    new = _rule_tags_expr([(n, c) for n, c in tags if c]) if tags else text("'{}'::text[]")
    await session.execute(
        update(PROFILES).where(P.rule_tags.is_distinct_from(new)).values(rule_tags=new)
    )


async def refresh_segment(session: AsyncSession, segment: Segment, trigger: str) -> dict[str, int]:
    """Recompute one segment over all profiles in SQL; returns entered/left counts."""
    for ddl in _TEMP_DDL:
        await session.execute(text(ddl))
    await session.execute(text("TRUNCATE seg_target, seg_changes"))
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
                _reason_expr(segment.condition),
            ).select_from(joined),
        )
    )
    for action, type_ in (("entered", events.SEGMENT_ENTERED), ("left", events.SEGMENT_LEFT)):
        if counts.get(action):
            data = func.jsonb_build_object(
                "segment_id",
                sid,
                "segment_name",
                segment.name,
                "member_id",
                seg_changes.c.member_id,
                "at",
                func.to_jsonb(func.now()),
                "trigger",
                trigger,
            )
            await events.publish_from_select(
                session,
                type_,
                select(seg_changes.c.member_id, data.label("data")).where(
                    seg_changes.c.action == action
                ),
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
    return {"entered": int(counts.get("entered", 0)), "left": int(counts.get("left", 0))}


async def refresh_all(session: AsyncSession, trigger: str) -> dict[str, dict[str, int]]:
    await refresh_rule_tags(session)
    out: dict[str, dict[str, int]] = {}
    for segment in (await session.execute(select(Segment))).scalars():
        out[segment.segment_id] = await refresh_segment(session, segment, trigger)
    return out


# ---------------------------------------------------------------- definitions


async def create_tag(
    session: AsyncSession, name: str, kind: str, condition: str | None, description: str | None
) -> Tag:
    if kind == "rule":
        if not condition:
            raise InvalidCondition(
                "a rule tag needs a condition",
                errors=[
                    {"field": "condition", "message": "required for a rule tag", "type": "missing"}
                ],
            )
        validate_condition(condition, rule_ctx=True)
    elif condition:
        raise InvalidCondition(
            "a manual tag has no condition",
            errors=[{"field": "condition", "message": "only rule tags have one", "type": "extra"}],
        )
    if await session.get(Tag, name) is not None:
        raise DuplicateName(f"a tag named {name!r} already exists", name=name)
    tag = Tag(name=name, kind=kind, condition=condition, description=description)
    forget_definitions(session)
    session.add(tag)
    await session.flush()
    if kind == "rule":
        await refresh_all(session, "tag.created")
    return tag


async def tag_member(
    session: AsyncSession, member_id: str, add: list[str], remove: list[str]
) -> list[str]:
    from segmentation.profiles.service import ProfileNotFound

    rows = await session.execute(select(Tag.name, Tag.kind).where(Tag.name.in_(add + remove)))
    known: dict[str, str] = {row[0]: row[1] for row in rows}
    for name in add + remove:
        if name not in known:
            raise TagNotFound(f"no tag named {name!r}; create it with POST /v1/tags", tag=name)
        if known[name] != "manual":
            raise InvalidCondition(
                f"{name!r} is a rule tag: it follows its condition and cannot be set by hand",
                tag=name,
            )
    current = (
        await session.execute(select(P.manual_tags).where(P.member_id == member_id))
    ).scalar_one_or_none()
    if current is None:
        raise ProfileNotFound(f"No profile for member {member_id!r} yet", member_id=member_id)
    tags = sorted((set(current) | set(add)) - set(remove))
    await session.execute(
        update(Profile)
        .where(P.member_id == member_id)
        .values(manual_tags=tags, updated_at=func.now())
    )
    await refresh_member(session, member_id, "tags.changed")
    return tags


async def create_segment(
    session: AsyncSession, name: str, condition: str, description: str | None
) -> Segment:
    validate_condition(condition)
    exists = (
        await session.execute(select(Segment.segment_id).where(Segment.name == name))
    ).scalar_one_or_none()
    if exists is not None:
        raise DuplicateName(f"a segment named {name!r} already exists", name=name)
    node, _ = compiled(condition)
    segment = Segment(
        segment_id=f"seg_{uuid.uuid4().hex[:16]}",
        name=name,
        condition=condition,
        description=description,
        refresh_mode="batch" if uses_time_window(node) else "live",
    )
    forget_definitions(session)
    session.add(segment)
    await session.flush()
    await refresh_segment(session, segment, "segment.created")
    await session.refresh(segment)
    return segment


async def get_segment(session: AsyncSession, segment_id: str) -> Segment:
    segment = await session.get(Segment, segment_id)
    if segment is None:
        raise SegmentNotFound(f"no segment {segment_id!r}", segment_id=segment_id)
    return segment


async def list_segments(session: AsyncSession) -> list[Segment]:
    return list((await session.execute(select(Segment).order_by(Segment.created_at))).scalars())


async def list_tags(session: AsyncSession) -> list[Tag]:
    return list((await session.execute(select(Tag).order_by(Tag.name))).scalars())


async def segment_members(
    session: AsyncSession, segment_id: str, limit: int, cursor: str | None
) -> tuple[list[tuple[str, datetime]], str | None, int]:
    segment = await get_segment(session, segment_id)
    stmt = (
        select(SegmentMember.member_id, SegmentMember.entered_at)
        .where(SegmentMember.segment_id == segment_id)
        .order_by(SegmentMember.member_id)
        .limit(limit + 1)
    )
    if cursor:
        stmt = stmt.where(SegmentMember.member_id > cursor)
    rows = [(r[0], r[1]) for r in (await session.execute(stmt)).all()]
    next_cursor = rows[limit - 1][0] if len(rows) > limit else None
    return rows[:limit], next_cursor, segment.member_count


async def explain(session: AsyncSession, segment_id: str, member_id: str) -> dict[str, Any]:
    from segmentation.profiles.service import ProfileNotFound

    segment = await get_segment(session, segment_id)
    node, condition = compiled(segment.condition)
    clauses = comparisons(node)
    cols: list[Any] = [condition.label("matches")]
    for i, c in enumerate(clauses):
        cols += [field_expr(c.field).label(f"v{i}"), comparison_sql(c).label(f"r{i}")]
    row = (await session.execute(select(*cols).where(P.member_id == member_id))).first()
    if row is None:
        raise ProfileNotFound(f"No profile for member {member_id!r} yet", member_id=member_id)
    from segmentation.conditions.language import describe_value

    member = await session.get(SegmentMember, (segment_id, member_id))
    history = (
        await session.execute(
            select(SegmentHistory)
            .where(SegmentHistory.segment_id == segment_id, SegmentHistory.member_id == member_id)
            .order_by(SegmentHistory.at, SegmentHistory.id)
        )
    ).scalars()
    return {
        "segment_id": segment_id,
        "member_id": member_id,
        "condition": segment.condition,
        "in_segment": member is not None,
        "matches_now": bool(row.matches),
        "refresh_mode": segment.refresh_mode,
        "last_computed_at": segment.last_computed_at,
        "clauses": [
            {
                "clause": c.text,
                "field": c.field,
                "operator": c.op,
                "operand": describe_value(c.value),
                "member_value": _jsonable(getattr(row, f"v{i}")),
                "result": bool(getattr(row, f"r{i}")),
            }
            for i, c in enumerate(clauses)
        ],
        "history": [
            {"action": h.action, "at": h.at, "trigger": h.trigger, "reason": h.reason}
            for h in history
        ],
    }


def _jsonable(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return list(value)
    return value
