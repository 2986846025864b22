"""A member's data rights over HTTP: the export of everything this service holds about them,
and the erasure of their personal data (``privacy.service``)."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from loyalty_shared.db import Session
from points.identifiers import ClientId
from points.members.schemas import MemberErased, MemberExport
from points.privacy import service as privacy

router = APIRouter(prefix="/v1/members", tags=["members"])


@router.delete(
    "/{member_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MemberErased,
    summary="Erase the member's personal data (admin); ledger amounts are kept",
    responses={404: {"description": "No such member"}},
)
async def erase_member(
    member_id: Annotated[ClientId, Path()], session: Session, request: Request
) -> MemberErased:
    key = request.app.state.settings.erasure_key()
    erased_at = await privacy.erase(session, member_id, key=key)
    return MemberErased(member_id=member_id, erased_at=erased_at)


@router.get(
    "/{member_id}/export",
    response_model=MemberExport,
    summary="Everything the points service holds about the member (admin, member self)",
    responses={404: {"description": "No such member (or erased)"}},
)
async def export_member(member_id: Annotated[ClientId, Path()], session: Session) -> MemberExport:
    return MemberExport.model_validate(await privacy.export(session, member_id))
