from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status

from feedback.complaints import service
from feedback.complaints.schemas import ComplaintIn, ComplaintOut, ComplaintPage
from loyalty_shared.db import Session

router = APIRouter(prefix="/v1/complaints", tags=["complaints"])

Status = Literal["open", "acknowledged", "in_progress", "escalated", "resolved", "closed"]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ComplaintOut,
    summary="Open a complaint; the answer carries its SLA deadlines",
)
async def open_complaint(body: ComplaintIn, session: Session, request: Request) -> ComplaintOut:
    return await service.open_complaint(session, request.app.state.settings, body)


@router.get("", response_model=ComplaintPage, summary="The complaint queue, newest first")
async def list_complaints(
    session: Session,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    member_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ComplaintPage:
    return await service.list_complaints(
        session, status=status_, member_id=member_id, limit=limit, cursor=cursor
    )


@router.get("/{complaint_id}", response_model=ComplaintOut, summary="One complaint")
async def get_complaint(complaint_id: str, session: Session) -> ComplaintOut:
    return await service.get_complaint(session, complaint_id)
