from decimal import Decimal
from typing import Any

from fastapi import APIRouter

from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from loyalty_shared.member_export import ExportedMemberId, export_answer
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
    member_id: ExportedMemberId, session: Session, caller: CurrentCaller
) -> dict[str, Any]:
    data = await service.export_member(session, member_id)
    return export_answer(
        data,
        member_id,
        caller,
        member_view.for_member,
        ProfileNotFound,
        custom_encoder={Decimal: str},
    )
