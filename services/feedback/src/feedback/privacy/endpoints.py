from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.encoders import jsonable_encoder

from feedback.privacy import member_view, service
from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from loyalty_shared.problems import NotFound

router = APIRouter(prefix="/v1/feedback/members", tags=["privacy"])


class NothingHeld(NotFound):
    slug = "member-not-found"
    title = "No data held for this member"


@router.get(
    "/{member_id}/export",
    summary="Everything feedback holds about a member (data subject export)",
    description="A member token gets the member's own facts without feedback's internal "
    "view of them (privacy/member_view.py); admin gets everything.",
)
async def export_member(
    member_id: Annotated[str, Path(min_length=1, max_length=128)],
    session: Session,
    caller: CurrentCaller,
) -> dict[str, Any]:
    data = await service.export_member(session, member_id)
    if data is None:
        raise NothingHeld(f"No data held for member {member_id!r}", member_id=member_id)
    if caller.is_member:
        data = member_view.for_member(data)
    encoded: dict[str, Any] = jsonable_encoder(data)
    return encoded
