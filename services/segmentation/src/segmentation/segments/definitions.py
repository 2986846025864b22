"""Tag and segment definitions: create, edit (rename, condition, description), archive.

Each write keeps a version in ``definition_history`` (created, updated, archived) and
sets the refresh mode from the fields the condition uses (``refresh_mode``): a segment
that asks for a batch rule tag is batch too, so every segment is classified again when a
rule tag changes. Memberships follow at once: a new or edited condition is evaluated
over all profiles (``batch.refresh_segment`` / ``refresh_all``); an archived segment's
members all leave it (history rows and ``segment.left`` events), and it is refreshed no
more. A tag that an active condition names cannot be renamed or archived (409
``tag-in-use``): no segment silently loses its members.

Lock order (as every other writer): the profiles table (tags: their refresh writes
profiles) or the memberships lock (segments), then the definition's row.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.deadlocks import retry_on_deadlock
from segmentation.conditions.compile import compiled
from segmentation.conditions.language import names_tag, refresh_mode
from segmentation.profiles.service import lock_profiles_for_bulk_write
from segmentation.segments.batch import empty_segment, refresh_all, refresh_segment
from segmentation.segments.live import MEMBERSHIPS_LOCK, forget_definitions
from segmentation.segments.models import DefinitionChange, Segment, Tag
from segmentation.segments.service import (
    DuplicateName,
    InvalidCondition,
    SegmentArchived,
    TagArchived,
    TagInUse,
    get_segment,
    get_tag,
    validate_condition,
)


async def _batch_rule_tags(session: AsyncSession) -> frozenset[str]:
    rows = await session.execute(
        select(Tag.name).where(
            Tag.kind == "rule", Tag.archived_at.is_(None), Tag.refresh_mode == "batch"
        )
    )
    return frozenset(rows.scalars())


async def _segment_mode(session: AsyncSession, condition: str) -> str:
    return refresh_mode(compiled(condition)[0], await _batch_rule_tags(session))


async def _classify_segments(session: AsyncSession) -> None:
    """Every active segment's mode again (after a rule tag's mode may have changed)."""
    batch = await _batch_rule_tags(session)
    segments = await session.execute(select(Segment).where(Segment.archived_at.is_(None)))
    for segment in segments.scalars():
        mode = refresh_mode(compiled(segment.condition)[0], batch)
        if mode != segment.refresh_mode:
            segment.refresh_mode = mode
    await session.flush()


async def _record(session: AsyncSession, kind: str, key: str, change: str, row: Any) -> None:
    """A new version of a definition, as it is now."""
    version = (
        await session.execute(
            select(func.coalesce(func.max(DefinitionChange.version), 0)).where(
                DefinitionChange.kind == kind, DefinitionChange.key == key
            )
        )
    ).scalar_one()
    session.add(
        DefinitionChange(
            kind=kind,
            key=key,
            version=version + 1,
            change=change,
            name=row.name,
            condition=row.condition,
            description=row.description,
            refresh_mode=row.refresh_mode,
        )
    )
    await session.flush()


async def history(session: AsyncSession, kind: str, key: str) -> list[DefinitionChange]:
    rows = await session.execute(
        select(DefinitionChange)
        .where(DefinitionChange.kind == kind, DefinitionChange.key == key)
        .order_by(DefinitionChange.version)
    )
    return list(rows.scalars())


# ---------------------------------------------------------------- tags


def _tag_mode(kind: str, condition: str | None) -> str:
    """Validate a tag's condition for its kind; the refresh mode it gives."""
    if kind == "rule":
        if not condition:
            raise InvalidCondition(
                "a rule tag needs a condition",
                errors=[
                    {"field": "condition", "message": "required for a rule tag", "type": "missing"}
                ],
            )
        validate_condition(condition, rule_ctx=True)
        return refresh_mode(compiled(condition, True)[0])
    if condition:
        raise InvalidCondition(
            "a manual tag has no condition",
            errors=[{"field": "condition", "message": "only rule tags have one", "type": "extra"}],
        )
    return "live"


async def create_tag(
    session: AsyncSession, name: str, kind: str, condition: str | None, description: str | None
) -> Tag:
    mode = _tag_mode(kind, condition)

    async def write() -> Tag:
        if kind == "rule":
            await lock_profiles_for_bulk_write(session)
        if await session.get(Tag, name) is not None:
            raise DuplicateName(f"a tag named {name!r} already exists", name=name)
        tag = Tag(
            name=name, kind=kind, condition=condition, description=description, refresh_mode=mode
        )
        forget_definitions(session)
        session.add(tag)
        await session.flush()
        await _record(session, "tag", name, "created", tag)
        if kind == "rule":
            await _classify_segments(session)
            await refresh_all(session, "tag.created")
        await session.refresh(tag)
        return tag

    # a rule tag rewrites profiles and memberships while events flow: a lost deadlock
    # runs it again (loyalty_shared.deadlocks), never a 500
    return await retry_on_deadlock(session, write)


async def _users_of_tag(session: AsyncSession, name: str) -> list[dict[str, str]]:
    """The active segments and rule tags whose condition asks for this tag."""
    used: list[dict[str, str]] = []
    segments = await session.execute(
        select(Segment.segment_id, Segment.name, Segment.condition)
        .where(Segment.archived_at.is_(None))
        .order_by(Segment.segment_id)
    )
    for segment_id, segment_name, condition in segments.all():
        if names_tag(compiled(condition)[0], name):
            used.append({"kind": "segment", "segment_id": segment_id, "name": segment_name})
    tags = await session.execute(
        select(Tag.name, Tag.condition)
        .where(Tag.kind == "rule", Tag.archived_at.is_(None))
        .order_by(Tag.name)
    )
    for tag_name, rule in tags.all():
        if rule and tag_name != name and names_tag(compiled(rule, True)[0], name):
            used.append({"kind": "tag", "name": tag_name})
    return used


async def _refuse_if_used(session: AsyncSession, name: str, doing: str) -> None:
    used = await _users_of_tag(session, name)
    if used:
        raise TagInUse(
            f"cannot {doing} tag {name!r}: {len(used)} active condition(s) ask for it; "
            "edit them first (a condition may name a tag that does not exist yet)",
            tag=name,
            used_by=used,
        )


_SORTED = "ARRAY(SELECT x FROM unnest({array}) AS u(x) ORDER BY x{collate})"
# manual tags are kept in code point order (sorted() in service.tag_member); rule tags in
# the database's order of tag names, as both refreshes write them
_TAG_ARRAYS = {"manual": ("manual_tags", ' COLLATE "C"'), "rule": ("rule_tags", "")}


async def _rename_tag(session: AsyncSession, tag: Tag, new: str) -> None:
    """A new primary key for the tag, its history and the profiles that have it."""
    if await session.get(Tag, new) is not None:
        raise DuplicateName(f"a tag named {new!r} already exists", name=new)
    old = tag.name
    await _refuse_if_used(session, old, "rename")
    column, collate = _TAG_ARRAYS[tag.kind]
    replaced = _SORTED.format(array=f"array_replace({column}, :old, :new)", collate=collate)
    await session.execute(
        text(f"UPDATE profiles SET {column} = {replaced} WHERE {column} @> ARRAY[:old]"),
        {"old": old, "new": new},
    )
    await session.execute(update(Tag).where(Tag.name == old).values(name=new))
    await session.execute(
        update(DefinitionChange)
        .where(DefinitionChange.kind == "tag", DefinitionChange.key == old)
        .values(key=new)
    )


async def update_tag(session: AsyncSession, name: str, changes: dict[str, Any]) -> Tag:
    """Rename, new condition (rule tags), new description; a new version if anything changed."""

    async def write() -> Tag:
        await lock_profiles_for_bulk_write(session)
        tag = await get_tag(session, name, for_update=True)
        if tag.archived_at is not None:
            raise TagArchived(f"tag {name!r} is archived", tag=name)
        new_name = changes.get("name", tag.name)
        condition = changes.get("condition", tag.condition)
        description = changes.get("description", tag.description)
        if (new_name, condition, description) == (tag.name, tag.condition, tag.description):
            return tag
        mode = _tag_mode(tag.kind, condition)
        if new_name != tag.name:
            await _rename_tag(session, tag, new_name)
            session.expunge(tag)
            tag = await get_tag(session, new_name, for_update=True)
        refresh = tag.kind == "rule" and (condition != tag.condition or mode != tag.refresh_mode)
        tag.condition, tag.description, tag.refresh_mode = condition, description, mode
        tag.updated_at = func.now()
        forget_definitions(session)
        await session.flush()
        await _record(session, "tag", tag.name, "updated", tag)
        if refresh:
            await _classify_segments(session)
            await refresh_all(session, "tag.updated")
        await session.refresh(tag)
        return tag

    return await retry_on_deadlock(session, write)


async def archive_tag(session: AsyncSession, name: str) -> Tag:
    """The tag leaves every profile and can no longer be set; its versions stay."""

    async def write() -> Tag:
        await lock_profiles_for_bulk_write(session)
        tag = await get_tag(session, name, for_update=True)
        if tag.archived_at is not None:
            return tag
        await _refuse_if_used(session, name, "archive")
        column = _TAG_ARRAYS[tag.kind][0]
        await session.execute(
            text(
                f"UPDATE profiles SET {column} = array_remove({column}, :name) "
                f"WHERE {column} @> ARRAY[:name]"
            ),
            {"name": name},
        )
        tag.archived_at = func.now()
        tag.updated_at = func.now()
        forget_definitions(session)
        await session.flush()
        await _record(session, "tag", name, "archived", tag)
        await _classify_segments(session)
        await session.refresh(tag)
        return tag

    return await retry_on_deadlock(session, write)


# ---------------------------------------------------------------- segments


async def create_segment(
    session: AsyncSession, name: str, condition: str, description: str | None
) -> Segment:
    validate_condition(condition)

    async def write() -> Segment:
        await _name_free(session, name)
        segment = Segment(
            segment_id=f"seg_{uuid.uuid4().hex[:16]}",
            name=name,
            condition=condition,
            description=description,
            refresh_mode=await _segment_mode(session, condition),
        )
        forget_definitions(session)
        session.add(segment)
        await session.flush()
        await _record(session, "segment", segment.segment_id, "created", segment)
        await refresh_segment(session, segment, "segment.created")
        await session.refresh(segment)
        return segment

    return await retry_on_deadlock(session, write)


async def _name_free(session: AsyncSession, name: str, segment_id: str | None = None) -> None:
    taken = (
        await session.execute(
            select(Segment.segment_id).where(
                Segment.name == name,
                Segment.archived_at.is_(None),
                Segment.segment_id != (segment_id or ""),
            )
        )
    ).scalar_one_or_none()
    if taken is not None:
        raise DuplicateName(f"a segment named {name!r} already exists", name=name)


async def update_segment(
    session: AsyncSession, segment_id: str, changes: dict[str, Any]
) -> Segment:
    """Rename, new condition, new description; a new condition is evaluated over every
    profile at once (trigger ``segment.updated``)."""
    if changes.get("condition") is not None:
        validate_condition(changes["condition"])

    async def write() -> Segment:
        await session.execute(MEMBERSHIPS_LOCK)
        segment = await get_segment(session, segment_id, for_update=True)
        if segment.archived_at is not None:
            raise SegmentArchived(f"segment {segment_id!r} is archived", segment_id=segment_id)
        name = changes.get("name", segment.name)
        condition = changes.get("condition", segment.condition)
        description = changes.get("description", segment.description)
        before = (segment.name, segment.condition, segment.description)
        if (name, condition, description) == before:
            return segment
        if name != segment.name:
            await _name_free(session, name, segment_id)
        segment.name, segment.condition, segment.description = name, condition, description
        segment.refresh_mode = await _segment_mode(session, condition)
        segment.updated_at = func.now()
        forget_definitions(session)
        await session.flush()
        await _record(session, "segment", segment_id, "updated", segment)
        if condition != before[1]:
            await refresh_segment(session, segment, "segment.updated")
        await session.refresh(segment)
        return segment

    return await retry_on_deadlock(session, write)


async def archive_segment(session: AsyncSession, segment_id: str) -> Segment:
    """No more refreshes; every member leaves (trigger ``segment.archived``); the segment's
    definitions and membership history stay readable."""

    async def write() -> Segment:
        await session.execute(MEMBERSHIPS_LOCK)
        segment = await get_segment(session, segment_id, for_update=True)
        if segment.archived_at is not None:
            return segment
        await empty_segment(session, segment, "segment.archived")
        segment.archived_at = func.now()
        segment.updated_at = func.now()
        forget_definitions(session)
        await session.flush()
        await _record(session, "segment", segment_id, "archived", segment)
        await session.refresh(segment)
        return segment

    return await retry_on_deadlock(session, write)
