from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from loyalty_shared.db import Session
from loyalty_shared.idempotency import IdempotencyKey, RequestKey, once
from segmentation.db import idempotency_keys
from segmentation.segments import definitions, export, service
from segmentation.segments.schemas import (
    DefinitionHistory,
    DefinitionOut,
    ExplainOut,
    ProfileTagsIn,
    ProfileTagsOut,
    SegmentIn,
    SegmentList,
    SegmentMemberOut,
    SegmentMembersPage,
    SegmentOut,
    SegmentPatch,
    TagIn,
    TagOut,
    TagPatch,
    TagPut,
)

router = APIRouter(tags=["tags and segments"])

MemberId = Annotated[str, Path(min_length=1, max_length=128)]
SegmentId = Annotated[str, Path(min_length=1, max_length=64)]
TagPath = Annotated[str, Path(min_length=1, max_length=64)]
IncludeArchived = Annotated[bool, Query(description="also list the archived ones")]
Out = TypeVar("Out", bound=BaseModel)

_WRITE_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such tag or segment"},
    409: {
        "description": "Archived, a name taken, a tag that active conditions ask for "
        "(tag-in-use, with used_by), or an Idempotency-Key used with another request"
    },
    422: {"description": "An invalid condition (position, field) or body"},
}


async def _once(
    session: Session,
    scope: str,
    key: RequestKey,
    request: dict[str, Any],
    out: type[Out],
    write: Callable[[], Awaitable[Out]],
) -> Out:
    return await once(session, idempotency_keys, scope, key, request, out, write)


def _tag(tag: Any) -> TagOut:
    return TagOut.model_validate(tag, from_attributes=True)


def _segment(segment: Any) -> SegmentOut:
    return SegmentOut.model_validate(segment, from_attributes=True)


def _history(rows: list[Any]) -> DefinitionHistory:
    return DefinitionHistory(
        items=[DefinitionOut.model_validate(r, from_attributes=True) for r in rows]
    )


@router.get("/v1/tags", response_model=list[TagOut], summary="Every tag")
async def list_tags(session: Session, include_archived: IncludeArchived = False) -> list[TagOut]:
    return [_tag(t) for t in await service.list_tags(session, include_archived)]


@router.get("/v1/tags/{name}", response_model=TagOut, summary="One tag")
async def get_tag(name: TagPath, session: Session) -> TagOut:
    return _tag(await service.get_tag(session, name))


@router.patch(
    "/v1/tags/{name}",
    response_model=TagOut,
    responses=_WRITE_ANSWERS,
    summary="Rename a tag, change a rule tag's condition or a description",
    description="A rename moves the tag on every profile; a new condition is evaluated over "
    "every profile at once. A tag that an active segment or rule tag asks for cannot be "
    "renamed (409 tag-in-use). Every version is kept (GET .../definitions).",
)
async def patch_tag(
    name: TagPath, body: TagPatch, session: Session, idempotency_key: IdempotencyKey
) -> TagOut:
    async def write() -> TagOut:
        return _tag(await definitions.update_tag(session, name, body.changes()))

    request = {"name": name, **body.model_dump(mode="json", exclude_unset=True)}
    return await _once(session, "tag-patch", idempotency_key, request, TagOut, write)


@router.put(
    "/v1/tags/{name}",
    response_model=TagOut,
    responses=_WRITE_ANSWERS,
    summary="Replace a tag's definition (name, condition, description; not its kind)",
)
async def put_tag(
    name: TagPath, body: TagPut, session: Session, idempotency_key: IdempotencyKey
) -> TagOut:
    async def write() -> TagOut:
        return _tag(await definitions.update_tag(session, name, body.model_dump()))

    request = {"name": name, **body.model_dump(mode="json")}
    return await _once(session, "tag-put", idempotency_key, request, TagOut, write)


@router.post(
    "/v1/tags/{name}/archive",
    response_model=TagOut,
    responses=_WRITE_ANSWERS,
    summary="Archive a tag: it leaves every profile and can no longer be set",
    description="Refused (409 tag-in-use) while an active condition asks for it. The name "
    "stays taken and the versions stay readable. Archiving an archived tag changes nothing.",
)
async def archive_tag(name: TagPath, session: Session, idempotency_key: IdempotencyKey) -> TagOut:
    async def write() -> TagOut:
        return _tag(await definitions.archive_tag(session, name))

    return await _once(session, "tag-archive", idempotency_key, {"name": name}, TagOut, write)


@router.get(
    "/v1/tags/{name}/definitions",
    response_model=DefinitionHistory,
    summary="Every version of a tag's definition",
)
async def tag_definitions(name: TagPath, session: Session) -> DefinitionHistory:
    await service.get_tag(session, name)
    return _history(await definitions.history(session, "tag", name))


@router.post(
    "/v1/tags",
    status_code=201,
    response_model=TagOut,
    responses={
        409: {
            "description": "A tag with this name exists, or the Idempotency-Key was used with "
            "another request"
        }
    },
    summary="Create a manual tag or a rule tag (condition language: docs/segmentation.md)",
)
async def create_tag(body: TagIn, session: Session, idempotency_key: IdempotencyKey) -> TagOut:
    async def write() -> TagOut:
        tag = await definitions.create_tag(
            session, body.name, body.kind, body.condition, body.description
        )
        return _tag(tag)

    return await once(
        session,
        idempotency_keys,
        "tag",
        idempotency_key,
        body.model_dump(mode="json"),
        TagOut,
        write,
    )


@router.post(
    "/v1/profiles/{member_id}/tags",
    response_model=ProfileTagsOut,
    summary="Add or remove manual tags on a profile",
)
async def tag_profile(
    member_id: MemberId,
    body: ProfileTagsIn,
    session: Session,
    idempotency_key: IdempotencyKey,
) -> ProfileTagsOut:
    async def write() -> ProfileTagsOut:
        manual = await service.tag_member(session, member_id, body.add, body.remove)
        from segmentation.profiles.service import get_profile

        profile = await get_profile(session, member_id)
        return ProfileTagsOut(member_id=member_id, manual_tags=manual, tags=profile.tags)

    request = {"member_id": member_id, **body.model_dump(mode="json")}
    return await once(
        session, idempotency_keys, "profile-tags", idempotency_key, request, ProfileTagsOut, write
    )


@router.get("/v1/segments", response_model=SegmentList, summary="Saved segments")
async def list_segments(session: Session, include_archived: IncludeArchived = False) -> SegmentList:
    return SegmentList(
        items=[_segment(s) for s in await service.list_segments(session, include_archived)]
    )


@router.post(
    "/v1/segments",
    status_code=201,
    response_model=SegmentOut,
    summary="Save a segment",
    responses={409: {"description": "The Idempotency-Key was used with another request"}},
)
async def create_segment(
    body: SegmentIn, session: Session, idempotency_key: IdempotencyKey
) -> SegmentOut:
    async def write() -> SegmentOut:
        segment = await definitions.create_segment(
            session, body.name, body.condition, body.description
        )
        return _segment(segment)

    request = body.model_dump(mode="json")
    return await once(
        session, idempotency_keys, "segment", idempotency_key, request, SegmentOut, write
    )


@router.get("/v1/segments/{segment_id}", response_model=SegmentOut, summary="One segment")
async def get_segment(segment_id: SegmentId, session: Session) -> SegmentOut:
    return _segment(await service.get_segment(session, segment_id))


@router.patch(
    "/v1/segments/{segment_id}",
    response_model=SegmentOut,
    responses=_WRITE_ANSWERS,
    summary="Rename a segment, change its condition or description",
    description="A new condition is evaluated over every profile at once: the members that "
    "enter or leave get history rows and events (trigger segment.updated); the refresh mode "
    "follows the new condition. Every version is kept (GET .../definitions).",
)
async def patch_segment(
    segment_id: SegmentId, body: SegmentPatch, session: Session, idempotency_key: IdempotencyKey
) -> SegmentOut:
    async def write() -> SegmentOut:
        return _segment(await definitions.update_segment(session, segment_id, body.changes()))

    request = {"segment_id": segment_id, **body.model_dump(mode="json", exclude_unset=True)}
    return await _once(session, "segment-patch", idempotency_key, request, SegmentOut, write)


@router.put(
    "/v1/segments/{segment_id}",
    response_model=SegmentOut,
    responses=_WRITE_ANSWERS,
    summary="Replace a segment's definition (name, condition, description)",
)
async def put_segment(
    segment_id: SegmentId, body: SegmentIn, session: Session, idempotency_key: IdempotencyKey
) -> SegmentOut:
    async def write() -> SegmentOut:
        return _segment(await definitions.update_segment(session, segment_id, body.model_dump()))

    request = {"segment_id": segment_id, **body.model_dump(mode="json")}
    return await _once(session, "segment-put", idempotency_key, request, SegmentOut, write)


@router.post(
    "/v1/segments/{segment_id}/archive",
    response_model=SegmentOut,
    responses=_WRITE_ANSWERS,
    summary="Archive a segment: no more refreshes, every member leaves it",
    description="Each member leaves with a history row and a loyalty.segment.left.v1 event "
    "(trigger segment.archived), so that consumers that keep memberships let go of them. "
    "Its definitions and membership history stay readable; its name may be reused. "
    "Archiving an archived segment changes nothing.",
)
async def archive_segment(
    segment_id: SegmentId, session: Session, idempotency_key: IdempotencyKey
) -> SegmentOut:
    async def write() -> SegmentOut:
        return _segment(await definitions.archive_segment(session, segment_id))

    request = {"segment_id": segment_id}
    return await _once(session, "segment-archive", idempotency_key, request, SegmentOut, write)


@router.get(
    "/v1/segments/{segment_id}/definitions",
    response_model=DefinitionHistory,
    summary="Every version of a segment's definition",
)
async def segment_definitions(segment_id: SegmentId, session: Session) -> DefinitionHistory:
    await service.get_segment(session, segment_id)
    return _history(await definitions.history(session, "segment", segment_id))


@router.get(
    "/v1/segments/{segment_id}/members",
    response_model=SegmentMembersPage,
    summary="Members of a segment, paged by member id",
)
async def segment_members(
    segment_id: SegmentId,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
) -> SegmentMembersPage:
    rows, next_cursor, count = await service.segment_members(session, segment_id, limit, cursor)
    return SegmentMembersPage(
        items=[SegmentMemberOut(member_id=m, entered_at=at) for m, at in rows],
        next_cursor=next_cursor,
        count=count,
    )


@router.get(
    "/v1/segments/{segment_id}/members.csv",
    response_class=StreamingResponse,
    summary="Every member of a segment as CSV, streamed (for campaign tools)",
    description="text/csv with a header row: member_id, entered_at (RFC 3339), in member id "
    "order. Read from one snapshot (a REPEATABLE READ transaction, in pages of the primary "
    "key): the membership at one instant, in constant memory. An archived segment has a "
    "header and no rows. No personal data: this service holds none.",
    responses={
        200: {"content": {"text/csv": {"example": "member_id,entered_at\r\n"}}},
        404: {"description": "No such segment"},
    },
)
async def segment_members_csv(
    segment_id: SegmentId, request: Request, session: Session
) -> StreamingResponse:
    await service.get_segment(session, segment_id)  # a 404 before the first byte
    app = request.app
    return StreamingResponse(
        export.member_rows(app.state.engine, app.state.sessionmaker, segment_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{segment_id}-members.csv"'},
    )


@router.get(
    "/v1/segments/{segment_id}/explain/{member_id}",
    response_model=ExplainOut,
    summary="Why a member is (or is not) in a segment: each clause with the member's value",
)
async def explain(segment_id: SegmentId, member_id: MemberId, session: Session) -> ExplainOut:
    return ExplainOut.model_validate(await service.explain(session, segment_id, member_id))
