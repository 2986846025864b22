"""The live refresh: rule tags and segment memberships of the members an event touched.

After every consumed batch the live rule tags and the live segments' conditions are
evaluated against the profiles of the members it touched, in two set-based statements
(``refresh_members`` / ``flush_refresh``, ``_live_plan``); API changes to a member's tags
do the same for that member at once. Each change writes a history row (with the clause
values that caused it) and a ``loyalty.segment.entered.v1`` / ``left.v1`` event to the
outbox, in the same statement. Batch tags and segments (their conditions use a field only
the recompute changes: ``conditions.language.refresh_mode``) are left to the recompute
(``batch.py``): no event changes them.

The statements are built once per set of definitions, as SQL text with the conditions'
literals inlined (asyncpg prepares each once). The literals are rendered by the dialect
the statements run on (asyncpg's), so that a ``%``, ``_``, quote, backslash or colon in a
literal means itself here exactly as in the batch refresh's bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.ids import uuid7
from segmentation import events
from segmentation.conditions.compile import compiled, derived_columns
from segmentation.segments.expressions import reason_expr, rule_tags_expr


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


# Taken (transaction-level) before memberships are written: shared by live refreshes,
# which touch disjoint members or wait on each other's profile rows; exclusive by the
# batch refresh (``batch.refresh_segment``), which reads every profile and membership of
# a segment and must not meet a live refresh halfway.
MEMBERSHIPS_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('segmentation-memberships'))")


async def _refresh_now(session: AsyncSession, member_ids: list[str], trigger: str) -> None:
    rule_tags, segments = await _definitions(session)
    keep_batch = any(t.mode == "batch" for t in rule_tags)
    plan = _live_plan(
        tuple((t.name, t.condition) for t in rule_tags if t.condition and t.mode == "live"),
        keep_batch,
        tuple((s.segment_id, s.name, s.condition) for s in segments),
    )
    if plan.tags is not None:
        params: dict[str, Any] = {"ids": member_ids}
        if keep_batch:
            params["live_names"] = plan.live_tag_names
        await session.execute(plan.tags, params)
    if plan.segments is not None:
        previous = (await session.execute(_LOCK_AND_CUSTOM_PLANS)).scalar_one()
        await session.execute(
            plan.segments,
            {
                "ids": member_ids,
                "trigger": trigger,
                "seg_ids": plan.segment_ids,
                "seg_names": plan.segment_names,
                "headers": _headers(),
                "id_prefix": _event_id_prefix(),
            },
        )
        await session.execute(_PLAN_MODE, {"mode": previous})


# The segments statement is planned for its own member list every time (about 2 ms of
# CPU). Its generic plan (Postgres's choice for a prepared statement after five
# executions) counts 10 members in ``ANY(:ids)`` and nests loops over the changes:
# measured 6x slower with 200 rule tags and 20 segments (bench/segmentation.py). The
# setting is for this statement only; one round trip with the memberships lock.
_LOCK_AND_CUSTOM_PLANS = text(
    "WITH s AS MATERIALIZED (SELECT current_setting('plan_cache_mode') AS previous) "
    "SELECT s.previous FROM s, LATERAL (SELECT "
    "pg_advisory_xact_lock_shared(hashtext('segmentation-memberships')), "
    "set_config('plan_cache_mode', 'force_custom_plan', true) "
    "WHERE s.previous IS NOT NULL) x"
)
_PLAN_MODE = text("SELECT set_config('plan_cache_mode', :mode, true)")


def _event_id_prefix() -> str:
    """A new UUIDv7 without its last 8 hex digits: the segments statement numbers its
    events' ids from it (unique: its rows are numbered 1, 2, ..., at most members x live
    segments, far below 16**8; 42 random bits and the time in the rest; time-ordered, so
    they go to the right edge of the outbox's event_id index, as ``loyalty_shared.ids``
    says)."""
    return uuid7()[:-8]


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
        tags = [_TagDef(r.key, r.condition, r.mode) for r in rows if r.kind == "tag"]
        segments = [_SegmentDef(r.key, r.name, r.condition) for r in rows if r.kind == "segment"]
        cached = (tags, segments)
        session.info[_DEFINITIONS] = cached
    return cached


class _TagDef(NamedTuple):
    name: str
    condition: str | None
    mode: str


class _SegmentDef(NamedTuple):
    segment_id: str
    name: str
    condition: str


# one round trip for both (read at the start of every consumer batch): the active rule
# tags (live and batch: the batch ones are kept as they are) and the live segments
_DEFINITIONS_SQL = text(
    "SELECT 'tag' AS kind, name AS key, CAST(NULL AS text) AS name, condition, "
    "refresh_mode AS mode FROM tags WHERE kind = 'rule' AND archived_at IS NULL "
    "UNION ALL "
    "SELECT 'segment', segment_id, name, condition, refresh_mode FROM segments "
    "WHERE refresh_mode = 'live' AND archived_at IS NULL "
    "ORDER BY kind DESC, key"
)


def forget_definitions(session: AsyncSession) -> None:
    session.info.pop(_DEFINITIONS, None)


# the dialect the statements run on: it renders literals as they will be read (asyncpg's
# paramstyle is $n, so a "%" is not doubled as the default psycopg2 dialect would)
_DIALECT = postgresql_asyncpg.dialect()  # type: ignore[no-untyped-call]


def inline_sql(expr: Any) -> str:
    """An expression as SQL text with its literals inlined, for ``text()``.

    The literals come from parsed, type-checked conditions and are quoted by the dialect;
    colons are escaped so that ``text()`` takes none of them for a parameter.
    """
    rendered = str(expr.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))
    return rendered.replace(":", "\\:")


@dataclass(frozen=True)
class _LivePlan:
    tags: TextClause | None
    segments: TextClause | None
    segment_ids: list[str]
    segment_names: list[str]
    live_tag_names: list[str]


# The members' rows as both statements read them: the profile and, computed once per
# member, the derived fields the conditions were compiled to read as columns
# (``compile.field_expr(derived=True)``). ``OFFSET 0`` keeps the subquery from being
# pulled up: pulled up, each derived column would be computed again wherever it is read.
_MEMBERS = """(
    SELECT profiles.*, {derived} FROM profiles
    WHERE profiles.member_id = ANY(CAST(:ids AS text[])) OFFSET 0
) AS profiles"""


# The members' rule tags; only the rows whose tags change are written. The tags are
# computed once per member (``n``, fenced by ``OFFSET 0``: not pulled up into both the SET
# and the WHERE), over ``_MEMBERS``. With batch rule tags defined, a profile keeps the
# batch tags it has (only the recompute changes them) and gets the live ones it meets, in
# name order as the batch refresh writes them. Its generic plan is the right one (index
# scans by member id) and is not planned again per batch (planning 200 conditions costs
# more CPU than evaluating them).
_LIVE_TAGS = """
UPDATE profiles SET rule_tags = n.tags
FROM (SELECT profiles.member_id, {tags} AS tags FROM {members} OFFSET 0) AS n
WHERE profiles.member_id = n.member_id AND profiles.rule_tags IS DISTINCT FROM n.tags
"""
_KEEP_BATCH_TAGS = """ARRAY(
    SELECT x FROM (
        SELECT unnest(profiles.rule_tags)
        EXCEPT SELECT unnest(CAST(:live_names AS text[]))
        UNION SELECT unnest({live})
    ) AS u(x) ORDER BY x)"""


# ``p`` is MATERIALIZED: each member's conditions are evaluated once (an inlined CTE would
# be evaluated again where it is read), to the positions of the segments it meets; a
# member whose positions equal those of its memberships costs nothing more. The
# history's reasons read the members' rows from ``p`` (as ``profiles``, with the derived
# fields).
_LIVE_SEGMENTS = """
WITH p AS MATERIALIZED (
    SELECT profiles.*, array_remove(ARRAY[{wanted}], NULL) AS wanted FROM {members}
), has AS MATERIALIZED (
    -- each member's live segments now, as positions in :seg_ids, ascending: the batch's
    -- members' memberships in one index scan (ix_segment_members_member_id), never the table
    SELECT m.member_id, array_agg(x.i ORDER BY x.i) AS has
    FROM segment_members m
    CROSS JOIN LATERAL (
        SELECT array_position(CAST(:seg_ids AS text[]), CAST(m.segment_id AS text)) AS i
    ) x
    WHERE m.member_id = ANY(CAST(:ids AS text[])) AND x.i IS NOT NULL
    GROUP BY m.member_id
), current_ AS MATERIALIZED (
    -- ... and wanted
    SELECT p.member_id, p.wanted, COALESCE(h.has, CAST('{{}}' AS int[])) AS has
    FROM p LEFT JOIN has h ON h.member_id = p.member_id
), changes AS MATERIALIZED (
    -- only the members whose two lists differ are unnested
    SELECT c.member_id, x.i, true AS entering
    FROM current_ c CROSS JOIN unnest(c.wanted) AS x(i)
    WHERE c.wanted <> c.has AND NOT x.i = ANY(c.has)
    UNION ALL
    SELECT c.member_id, x.i, false
    FROM current_ c CROSS JOIN unnest(c.has) AS x(i)
    WHERE c.wanted <> c.has AND NOT x.i = ANY(c.wanted)
), entered AS (
    INSERT INTO segment_members (segment_id, member_id, entered_at)
    SELECT (CAST(:seg_ids AS text[]))[i], member_id, now() FROM changes WHERE entering
    ON CONFLICT DO NOTHING
    RETURNING segment_id, member_id
), left_ AS (
    DELETE FROM segment_members m USING changes c
    WHERE NOT c.entering AND m.member_id = c.member_id
      AND m.segment_id = (CAST(:seg_ids AS text[]))[c.i]
      AND m.member_id = ANY(CAST(:ids AS text[]))
    RETURNING m.segment_id, m.member_id
), done AS (
    SELECT segment_id, member_id, 'entered' AS action FROM entered
    UNION ALL
    SELECT segment_id, member_id, 'left' FROM left_
), named AS (
    -- event ids: the statement's UUIDv7 (:id_prefix, its first 24 of 32 hex digits, from
    -- Python) with the row's number as the last 8 (gen_random_uuid() cost 17 us a row)
    SELECT d.segment_id, d.member_id, d.action, x.i,
           (CAST(:seg_names AS text[]))[x.i] AS name,
           CAST(:id_prefix AS text) || lpad(to_hex(row_number() OVER ()), 8, '0') AS event_id,
           CASE d.action WHEN 'entered' THEN '{entered_type}' ELSE '{left_type}' END AS type
    FROM done d
    CROSS JOIN LATERAL (
        SELECT array_position(CAST(:seg_ids AS text[]), d.segment_id) AS i
    ) x
), history AS (
    INSERT INTO segment_history (segment_id, member_id, action, at, trigger, reason)
    SELECT n.segment_id, n.member_id, n.action, now(), CAST(:trigger AS text),
           CASE n.i {reasons} END
    FROM named n LEFT JOIN p AS profiles ON profiles.member_id = n.member_id
), locked AS (
    -- the counted segments' rows, locked in segment_id order: refreshes running at once
    -- (a consumer's concurrent transactions) wait for each other here, never deadlock
    SELECT s.segment_id FROM segments s
    WHERE s.segment_id IN (SELECT segment_id FROM done)
    ORDER BY s.segment_id FOR NO KEY UPDATE
), counted AS (
    UPDATE segments SET member_count = segments.member_count + x.delta
    FROM (
        SELECT segment_id,
               count(*) FILTER (WHERE action = 'entered')
               - count(*) FILTER (WHERE action = 'left') AS delta
        FROM done GROUP BY segment_id
    ) x
    WHERE segments.segment_id = x.segment_id
      AND segments.segment_id IN (SELECT segment_id FROM locked)
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
    rule_tags: tuple[tuple[str, str], ...],
    keep_batch_tags: bool,
    segments: tuple[tuple[str, str, str], ...],
) -> _LivePlan:
    """The two statements that refresh a list of members (``:ids``) for these definitions
    (the live rule tags and the live segments).

    1. rule tags: one UPDATE, only of the rows whose tags change (the batch rule tags a
       profile has are kept when ``keep_batch_tags``);
    2. segments: every condition evaluated over the members' profiles in one SELECT,
       compared with the current memberships; the differences are inserted/deleted,
       and only the rows actually inserted or deleted get a history row (with the
       clause values), a count change and an entered/left event in the outbox.
    Built once per set of definitions (they change rarely); asyncpg prepares each once.
    """
    from loyalty_shared.topics import SEGMENTATION_EVENTS

    derived = ", ".join(f"{inline_sql(expr)} AS {name}" for name, expr in derived_columns())
    members = _MEMBERS.format(derived=derived)
    tags_stmt: TextClause | None = None
    if rule_tags:
        expr = inline_sql(rule_tags_expr(list(rule_tags), derived=True))
        if keep_batch_tags:
            expr = _KEEP_BATCH_TAGS.format(live=expr)
        tags_stmt = text(_LIVE_TAGS.format(tags=expr, members=members))
    segments_stmt: TextClause | None = None
    if segments:
        segments_stmt = text(
            _LIVE_SEGMENTS.format(
                members=members,
                wanted=", ".join(
                    f"CASE WHEN {inline_sql(compiled(c, False, True)[1])} THEN {i} END"
                    for i, (_, _, c) in enumerate(segments, start=1)
                ),
                reasons=" ".join(
                    f"WHEN {i} THEN {inline_sql(reason_expr(c, derived=True))}"
                    for i, (_, _, c) in enumerate(segments, start=1)
                ),
                entered_type=events.SEGMENT_ENTERED,
                left_type=events.SEGMENT_LEFT,
                topic=SEGMENTATION_EVENTS,
                source=events.SOURCE,
            )
        ).bindparams(bindparam("headers", type_=JSONB))
    return _LivePlan(
        tags_stmt,
        segments_stmt,
        [s[0] for s in segments],
        [s[1] for s in segments],
        [name for name, _ in rule_tags],
    )
