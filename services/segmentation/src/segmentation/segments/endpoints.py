from typing import Annotated

from fastapi import APIRouter, Path, Query

from loyalty_shared.db import Session
from loyalty_shared.idempotency import IdempotencyKey, once
from segmentation.db import idempotency_keys
from segmentation.segments import service
from segmentation.segments.schemas import (
    ExplainOut,
    ProfileTagsIn,
    ProfileTagsOut,
    SegmentIn,
    SegmentList,
    SegmentMemberOut,
    SegmentMembersPage,
    SegmentOut,
    TagIn,
    TagOut,
)

router = APIRouter(tags=["tags and segments"])

MemberId = Annotated[str, Path(min_length=1, max_length=128)]
SegmentId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/v1/tags", response_model=list[TagOut], summary="Every tag")
async def list_tags(session: Session) -> list[TagOut]:
    return [
        TagOut.model_validate(t, from_attributes=True) for t in await service.list_tags(session)
    ]


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
        tag = await service.create_tag(
            session, body.name, body.kind, body.condition, body.description
        )
        return TagOut.model_validate(tag, from_attributes=True)

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
async def list_segments(session: Session) -> SegmentList:
    return SegmentList(
        items=[
            SegmentOut.model_validate(s, from_attributes=True)
            for s in await service.list_segments(session)
        ]
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
        segment = await service.create_segment(session, body.name, body.condition, body.description)
        return SegmentOut.model_validate(segment, from_attributes=True)

    request = body.model_dump(mode="json")
    return await once(
        session, idempotency_keys, "segment", idempotency_key, request, SegmentOut, write
    )


@router.get("/v1/segments/{segment_id}", response_model=SegmentOut, summary="One segment")
async def get_segment(segment_id: SegmentId, session: Session) -> SegmentOut:
    return SegmentOut.model_validate(
        await service.get_segment(session, segment_id), from_attributes=True
    )


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
    "/v1/segments/{segment_id}/explain/{member_id}",
    response_model=ExplainOut,
    summary="Why a member is (or is not) in a segment: each clause with the member's value",
)
async def explain(segment_id: SegmentId, member_id: MemberId, session: Session) -> ExplainOut:
    return ExplainOut.model_validate(await service.explain(session, segment_id, member_id))
