from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.encoders import jsonable_encoder

from loyalty_shared.db import Session
from segmentation.privacy import service
from segmentation.profiles.service import ProfileNotFound

router = APIRouter(prefix="/v1/profiles", tags=["privacy"])


@router.get(
    "/{member_id}/export",
    summary="Everything this service holds about a member (data subject export)",
)
async def export_member(
    member_id: Annotated[str, Path(min_length=1, max_length=128)], session: Session
) -> dict[str, Any]:
    data = await service.export_member(session, member_id)
    if data is None:
        raise ProfileNotFound(f"No data held for member {member_id!r}", member_id=member_id)
    encoded: dict[str, Any] = jsonable_encoder(data, custom_encoder={Decimal: str})
    return encoded
