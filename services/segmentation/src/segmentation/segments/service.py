"""Tags and segments: definitions, membership kept current, history, explanations.

Memberships change in two ways:
- live: after every consumed batch the rule tags and every segment's condition
  are evaluated against the profiles of the members it touched, in two set-based
  statements (``refresh_members`` / ``flush_refresh``, ``_live_plan``); API
  changes to a member's tags do the same for that member at once;
- batch: a recompute (and creating a segment or a rule tag) evaluates every
  condition over all profiles in set-based SQL (``refresh_all``). Segments whose
  condition depends on the clock (``days_since_*``) are marked ``batch``: their
  membership is exact as of ``last_computed_at``.
Each change writes a history row (with the clause values that caused it) and a
``loyalty.segment.entered.v1`` / ``left.v1`` event to the outbox.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    MetaData,
    String,
    Table,
    Text,
    TextClause,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array
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
    """The same for many members at once: two statements whatever their number.

    Inside a consumer batch (``defer_refresh``) the members are only noted here and
    evaluated once, at the end of the batch (``flush_refresh``).
    """
    if not member_ids:
        return
    pending: dict[str, str] | None = session.info.get(_PENDING)
    if pending is not None:
        for member_id in member_ids:
            pending.pop(member_id, None)  # keep the latest trigger, in arrival order
            pending[member_id] = trigger
        return
    await _refresh_now(session, member_ids, trigger)


_PENDING = "segmentation.pending_refresh"


def defer_refresh(session: AsyncSession) -> None:
    """From now on in this transaction, note members to refresh instead of refreshing them."""
    session.info.setdefault(_PENDING, {})


async def flush_refresh(session: AsyncSession) -> None:
    """Refresh every member noted since ``defer_refresh`` (one pass per distinct trigger)."""
    pending: dict[str, str] | None = session.info.get(_PENDING)
    if not pending:
        return
    by_trigger: dict[str, list[str]] = {}
    for member_id, trigger in pending.items():
        by_trigger.setdefault(trigger, []).append(member_id)
    pending.clear()
    for trigger, members in by_trigger.items():
        await _refresh_now(session, members, trigger)


async def _refresh_now(session: AsyncSession, member_ids: list[str], trigger: str) -> None:
    rule_tags, segments = await _definitions(session)
    plan = _live_plan(
        tuple((n, c) for n, c in rule_tags if c),
        tuple((s.segment_id, s.name, s.condition) for s in segments),
    )
    if plan.tags is not None:
        await session.execute(plan.tags, {"ids": member_ids})
    if plan.segments is not None:
        await session.execute(
            plan.segments,
            {
                "ids": member_ids,
                "trigger": trigger,
                "seg_ids": plan.segment_ids,
                "seg_names": plan.segment_names,
                "headers": _headers(),
            },
        )


def _headers() -> dict[str, str]:
    from loyalty_shared.request_context import current_request_id

    request_id = current_request_id()
    return {"x-request-id": request_id} if request_id else {}


_DEFINITIONS = "segmentation.definitions"


async def _definitions(session: AsyncSession) -> tuple[list[Any], list[Any]]:
    """Rule tags and segments, read once per transaction (a consumer batch is one)."""
    cached: tuple[list[Any], list[Any]] | None = session.info.get(_DEFINITIONS)
    if cached is None:
        rows = (await session.execute(_DEFINITIONS_SQL)).all()
        tags = [_TagDef(r.key, r.condition) for r in rows if r.kind == "tag"]
        segments = [_SegmentDef(r.key, r.name, r.condition) for r in rows if r.kind == "segment"]
        cached = (tags, segments)
        session.info[_DEFINITIONS] = cached
    return cached


class _TagDef(NamedTuple):
    name: str
    condition: str | None


class _SegmentDef(NamedTuple):
    segment_id: str
    name: str
    condition: str


# one round trip for both (read at the start of every consumer batch)
_DEFINITIONS_SQL = text(
    "SELECT 'tag' AS kind, name AS key, CAST(NULL AS text) AS name, condition "
    "FROM tags WHERE kind = 'rule' "
    "UNION ALL "
    "SELECT 'segment', segment_id, name, condition FROM segments "
    "ORDER BY kind DESC, key"
)


def forget_definitions(session: AsyncSession) -> None:
    session.info.pop(_DEFINITIONS, None)


def _rule_tags_expr(tags: list[tuple[str, str]]) -> Any:
    from sqlalchemy import case

    cases = [
        case((compiled(cond, True)[1], literal(name, Text)), else_=None) for name, cond in tags
    ]
    return cast(func.array_remove(array(cases, type_=Text), None), ARRAY(Text))  # type: ignore[misc]


_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _sql(expr: Any) -> str:
    """An expression as SQL text with its literals inlined (for the statements below).

    The literals come from parsed, type-checked conditions and are quoted by the
    dialect; colons are escaped so that ``text()`` takes none of them for a parameter.
    """
    rendered = str(expr.compile(dialect=_PG, compile_kwargs={"literal_binds": True}))
    return rendered.replace(":", "\\:")


@dataclass(frozen=True)
class _LivePlan:
    tags: TextClause | None
    segments: TextClause | None
    segment_ids: list[str]
    segment_names: list[str]


_LIVE_SEGMENTS = """
WITH p AS (
    SELECT profiles.member_id, ARRAY[{flags}] AS flags
    FROM profiles WHERE profiles.member_id = ANY(CAST(:ids AS text[]))
), wanted AS (
    SELECT p.member_id, s.segment_id, s.i, p.flags[s.i] AS inside
    FROM p CROSS JOIN unnest(CAST(:seg_ids AS text[])) WITH ORDINALITY AS s(segment_id, i)
), changes AS (
    SELECT w.member_id, w.segment_id, w.i, w.inside AS entering
    FROM wanted w
    LEFT JOIN segment_members m ON m.member_id = w.member_id AND m.segment_id = w.segment_id
    WHERE w.inside <> (m.member_id IS NOT NULL)
), entered AS (
    INSERT INTO segment_members (segment_id, member_id, entered_at)
    SELECT segment_id, member_id, now() FROM changes WHERE entering
    ON CONFLICT DO NOTHING
    RETURNING segment_id, member_id
), left_ AS (
    DELETE FROM segment_members m USING changes c
    WHERE NOT c.entering AND m.segment_id = c.segment_id AND m.member_id = c.member_id
    RETURNING m.segment_id, m.member_id
), done AS (
    SELECT segment_id, member_id, 'entered' AS action FROM entered
    UNION ALL
    SELECT segment_id, member_id, 'left' FROM left_
), named AS (
    SELECT d.segment_id, d.member_id, d.action, s.i, s.name,
           CAST(gen_random_uuid() AS text) AS event_id,
           CASE d.action WHEN 'entered' THEN '{entered_type}' ELSE '{left_type}' END AS type
    FROM done d
    JOIN unnest(CAST(:seg_ids AS text[]), CAST(:seg_names AS text[])) WITH ORDINALITY
        AS s(segment_id, name, i) ON s.segment_id = d.segment_id
), history AS (
    INSERT INTO segment_history (segment_id, member_id, action, at, trigger, reason)
    SELECT n.segment_id, n.member_id, n.action, now(), CAST(:trigger AS text),
           CASE n.i {reasons} END
    FROM named n LEFT JOIN profiles ON profiles.member_id = n.member_id
), counted AS (
    UPDATE segments SET member_count = segments.member_count + x.delta
    FROM (
        SELECT segment_id,
               count(*) FILTER (WHERE action = 'entered')
               - count(*) FILTER (WHERE action = 'left') AS delta
        FROM done GROUP BY segment_id
    ) x
    WHERE segments.segment_id = x.segment_id
)
INSERT INTO outbox (event_id, topic, key, event_type, payload, headers)
SELECT n.event_id, '{topic}', n.member_id, n.type,
       jsonb_build_object(
           'specversion', '1.0', 'id', n.event_id, 'source', '{source}', 'type', n.type,
           'time', to_jsonb(now()), 'subject', n.member_id,
           'datacontenttype', 'application/json',
           'data', jsonb_build_object(
               'segment_id', n.segment_id, 'segment_name', n.name, 'member_id', n.member_id,
               'at', to_jsonb(now()), 'trigger', CAST(:trigger AS text))),
       jsonb_build_object('ce_type', n.type) || CAST(:headers AS jsonb)
FROM named n
"""


@lru_cache(maxsize=64)
def _live_plan(
    rule_tags: tuple[tuple[str, str], ...], segments: tuple[tuple[str, str, str], ...]
) -> _LivePlan:
    """The two statements that refresh a list of members (``:ids``) for these definitions.

    1. rule tags: one UPDATE, only of the rows whose tags change;
    2. segments: every condition evaluated over the members' profiles in one SELECT,
       compared with the current memberships; the differences are inserted/deleted,
       and only the rows actually inserted or deleted get a history row (with the
       clause values), a count change and an entered/left event in the outbox.
    Built once per set of definitions (they change rarely); asyncpg prepares each once.
    """
    from loyalty_shared.topics import SEGMENTATION_EVENTS

    tags_stmt: TextClause | None = None
    if rule_tags:
        expr = _sql(_rule_tags_expr(list(rule_tags)))
        tags_stmt = text(
            f"UPDATE profiles SET rule_tags = {expr} "
            "WHERE profiles.member_id = ANY(CAST(:ids AS text[])) "
            f"AND profiles.rule_tags IS DISTINCT FROM {expr}"
        )
    segments_stmt: TextClause | None = None
    if segments:
        segments_stmt = text(
            _LIVE_SEGMENTS.format(
                flags=", ".join(_sql(compiled(c)[1]) for _, _, c in segments),
                reasons=" ".join(
                    f"WHEN {i} THEN {_sql(_reason_expr(c))}"
                    for i, (_, _, c) in enumerate(segments, start=1)
                ),
                entered_type=events.SEGMENT_ENTERED,
                left_type=events.SEGMENT_LEFT,
                topic=SEGMENTATION_EVENTS,
                source=events.SOURCE,
            )
        ).bindparams(bindparam("headers", type_=JSONB))
    return _LivePlan(tags_stmt, segments_stmt, [s[0] for s in segments], [s[1] for s in segments])


# ---------------------------------------------------------------- batch, all profiles


async def refresh_rule_tags(session: AsyncSession) -> None:
    tags = (
        await session.execute(
            select(Tag.name, Tag.condition).where(Tag.kind == "rule").order_by(Tag.name)
        )
    ).all()
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
