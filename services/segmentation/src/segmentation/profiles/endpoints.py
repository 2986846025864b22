from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from loyalty_shared.db import Session
from segmentation.profiles import service
from segmentation.profiles.schemas import ProfileOut, ProfilePage

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])

MemberId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("", response_model=ProfilePage, summary="Profiles, paged by member id")
async def list_profiles(
    session: Session,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=128, description="next_cursor of the previous page")
    ] = None,
    value_tier: Literal["high", "medium", "low"] | None = None,
    segment: Annotated[str | None, Query(max_length=64, description="a segment id")] = None,
) -> ProfilePage:
    return await service.list_profiles(
        session, limit=limit, cursor=cursor, value_tier=value_tier, segment=segment
    )


@router.get("/{member_id}", response_model=ProfileOut, summary="The member's 360 profile")
async def get_profile(member_id: MemberId, session: Session) -> ProfileOut:
    return await service.get_profile(session, member_id)
