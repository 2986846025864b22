from fastapi import APIRouter

from feedback.members import service
from feedback.members.schemas import MemberServiceView
from loyalty_shared.db import Session

router = APIRouter(prefix="/v1/feedback/members", tags=["complaints"])


@router.get(
    "/{member_id}",
    response_model=MemberServiceView,
    summary="Service view of a member: projected tier/value tier, open complaints, follow-ups",
)
async def member_view(member_id: str, session: Session) -> MemberServiceView:
    return await service.member_view(session, member_id)
