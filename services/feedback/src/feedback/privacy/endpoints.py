from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.encoders import jsonable_encoder

from feedback.privacy import service
from loyalty_shared.db import Session
from loyalty_shared.problems import NotFound

router = APIRouter(prefix="/v1/feedback/members", tags=["privacy"])


class NothingHeld(NotFound):
    slug = "member-not-found"
    title = "No data held for this member"


@router.get(
    "/{member_id}/export",
    summary="Everything feedback holds about a member (data subject export)",
)
async def export_member(
    member_id: Annotated[str, Path(min_length=1, max_length=128)], session: Session
) -> dict[str, Any]:
    data = await service.export_member(session, member_id)
    if data is None:
        raise NothingHeld(f"No data held for member {member_id!r}", member_id=member_id)
    encoded: dict[str, Any] = jsonable_encoder(data)
    return encoded
