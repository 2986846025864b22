"""Tags and segments: their definitions, members, history and explanations.

Memberships are kept current by the live refresh (``live.py``: the members a consumed
batch or an API call touched) and the batch refresh (``batch.py``: all profiles, at a
recompute and when a segment or a rule tag is created).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.deadlocks import retry_on_deadlock
from loyalty_shared.problems import Conflict, NotFound, Unprocessable
from segmentation.conditions.compile import comparison_sql, compiled, field_expr
from segmentation.conditions.language import (
    ConditionError,
    ConditionLimit,
    comparisons,
    describe_value,
    uses_time_window,
)
from segmentation.profiles.models import Profile
from segmentation.segments.batch import refresh_all, refresh_segment
from segmentation.segments.live import forget_definitions, refresh_member
from segmentation.segments.models import Segment, SegmentHistory, SegmentMember, Tag

P = Profile.__table__.c


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
    """Parse and type-check a condition; a ConditionError becomes a 422 naming ``field``
    (and, for a condition over a size limit, the limit)."""
    try:
        compiled(condition, rule_ctx)
    except ConditionError as exc:
        error: dict[str, Any] = {
            "field": field,
            "message": exc.message,
            "type": "condition",
            "position": exc.position,
        }
        extensions: dict[str, Any] = {"position": exc.position}
        if isinstance(exc, ConditionLimit):
            error.update(type=f"too-many-{exc.limit_name}", limit=exc.limit)
            extensions["limit"] = {"name": exc.limit_name, "max": exc.limit}
        raise InvalidCondition(str(exc), errors=[error], **extensions) from exc


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

    async def write() -> Tag:
        if await session.get(Tag, name) is not None:
            raise DuplicateName(f"a tag named {name!r} already exists", name=name)
        tag = Tag(name=name, kind=kind, condition=condition, description=description)
        forget_definitions(session)
        session.add(tag)
        await session.flush()
        if kind == "rule":
            await refresh_all(session, "tag.created")
        return tag

    # a rule tag rewrites profiles and memberships while events flow: a lost deadlock
    # runs it again (loyalty_shared.deadlocks), never a 500
    return await retry_on_deadlock(session, write)


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

    async def write() -> list[str]:
        current = (
            await session.execute(
                select(P.manual_tags).where(P.member_id == member_id).with_for_update()
            )
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

    return await retry_on_deadlock(session, write)


async def create_segment(
    session: AsyncSession, name: str, condition: str, description: str | None
) -> Segment:
    validate_condition(condition)
    node, _ = compiled(condition)

    async def write() -> Segment:
        exists = (
            await session.execute(select(Segment.segment_id).where(Segment.name == name))
        ).scalar_one_or_none()
        if exists is not None:
            raise DuplicateName(f"a segment named {name!r} already exists", name=name)
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

    return await retry_on_deadlock(session, write)


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
