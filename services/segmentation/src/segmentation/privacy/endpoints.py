from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.encoders import jsonable_encoder

from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from segmentation.privacy import member_view, service
from segmentation.profiles.service import ProfileNotFound

router = APIRouter(prefix="/v1/profiles", tags=["privacy"])


@router.get(
    "/{member_id}/export",
    summary="Everything this service holds about a member (data subject export)",
    description="A member token gets the member's own facts without the scores, tags and "
    "segments (privacy/member_view.py); admin gets everything.",
)
async def export_member(
    member_id: Annotated[str, Path(min_length=1, max_length=128)],
    session: Session,
    caller: CurrentCaller,
) -> dict[str, Any]:
    data = await service.export_member(session, member_id)
    if data is None:
        raise ProfileNotFound(f"No data held for member {member_id!r}", member_id=member_id)
    if caller.is_member:
        data = member_view.for_member(data)
    encoded: dict[str, Any] = jsonable_encoder(data, custom_encoder={Decimal: str})
    return encoded
