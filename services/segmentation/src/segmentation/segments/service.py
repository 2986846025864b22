"""Tags and segments: reads (definitions, members, explanations), manual tags on a profile,
and the problems the definitions' writes answer (``definitions.py`` writes them).

Memberships are kept current by the live refresh (``live.py``: the members a consumed
batch or an API call touched, for live tags and segments) and the batch refresh
(``batch.py``: all profiles, at every recompute and when a definition changes).
"""

from __future__ import annotations

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
)
from segmentation.profiles.models import Profile
from segmentation.segments.live import refresh_member
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


class TagInUse(Conflict):
    slug = "tag-in-use"
    title = "Tag named by active conditions"


class TagArchived(Conflict):
    slug = "tag-archived"
    title = "Tag archived"


class SegmentArchived(Conflict):
    slug = "segment-archived"
    title = "Segment archived"


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


# ---------------------------------------------------------------- reads


async def get_tag(session: AsyncSession, name: str, *, for_update: bool = False) -> Tag:
    tag = await session.get(Tag, name, with_for_update=for_update)
    if tag is None:
        raise TagNotFound(f"no tag named {name!r}", tag=name)
    return tag


async def tag_member(
    session: AsyncSession, member_id: str, add: list[str], remove: list[str]
) -> list[str]:
    from segmentation.profiles.service import ProfileNotFound

    rows = (
        await session.execute(
            select(Tag.name, Tag.kind, Tag.archived_at).where(Tag.name.in_(add + remove))
        )
    ).all()
    known: dict[str, str] = {row[0]: row[1] for row in rows if row[2] is None}
    archived = {row[0] for row in rows if row[2] is not None}
    for name in add + remove:
        if name in archived and name in add:
            raise TagArchived(f"tag {name!r} is archived: it can no longer be set", tag=name)
        if name not in known and name not in archived:
            raise TagNotFound(f"no tag named {name!r}; create it with POST /v1/tags", tag=name)
        if name in known and known[name] != "manual":
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


async def get_segment(
    session: AsyncSession, segment_id: str, *, for_update: bool = False
) -> Segment:
    segment = await session.get(Segment, segment_id, with_for_update=for_update)
    if segment is None:
        raise SegmentNotFound(f"no segment {segment_id!r}", segment_id=segment_id)
    return segment


async def list_segments(session: AsyncSession, include_archived: bool = False) -> list[Segment]:
    stmt = select(Segment).order_by(Segment.created_at, Segment.segment_id)
    if not include_archived:
        stmt = stmt.where(Segment.archived_at.is_(None))
    return list((await session.execute(stmt)).scalars())


async def list_tags(session: AsyncSession, include_archived: bool = False) -> list[Tag]:
    stmt = select(Tag).order_by(Tag.name)
    if not include_archived:
        stmt = stmt.where(Tag.archived_at.is_(None))
    return list((await session.execute(stmt)).scalars())


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
