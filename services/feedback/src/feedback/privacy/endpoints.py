from typing import Any

from fastapi import APIRouter

from feedback.privacy import member_view, service
from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from loyalty_shared.member_export import ExportedMemberId, export_answer
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
    member_id: ExportedMemberId, session: Session, caller: CurrentCaller
) -> dict[str, Any]:
    data = await service.export_member(session, member_id)
    return export_answer(data, member_id, caller, member_view.for_member, NothingHeld)
