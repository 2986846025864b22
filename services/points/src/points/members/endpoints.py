from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from loyalty_shared.db import Session
from points.identifiers import ClientId
from points.members import service
from points.members.schemas import MemberIn, MemberOut, MemberStatus

router = APIRouter(prefix="/v1/members", tags=["members"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberOut,
    summary="Enrol a member (idempotent by member_id)",
    responses={200: {"description": "Already enrolled: the existing member", "model": MemberOut}},
)
async def enrol_member(
    body: MemberIn, session: Session, request: Request, response: Response
) -> MemberOut:
    member, created = await service.enrol(session, request.app.state.settings, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return member


@router.get("/{member_id}", response_model=MemberStatus, summary="Membership status and balance")
async def get_member(
    member_id: Annotated[ClientId, Path()], session: Session
) -> MemberStatus:
    return await service.status(session, member_id)
