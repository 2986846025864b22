from typing import Annotated

from fastapi import APIRouter, Path

from loyalty_shared.db import Session
from segmentation.profiles import service
from segmentation.profiles.schemas import ProfileOut

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])


@router.get("/{member_id}", response_model=ProfileOut, summary="The member's 360 profile")
async def get_profile(
    member_id: Annotated[str, Path(min_length=1, max_length=128)], session: Session
) -> ProfileOut:
    return await service.get_profile(session, member_id)
