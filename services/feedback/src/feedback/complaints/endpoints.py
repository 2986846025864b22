from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request, status

from feedback.clock import Now
from feedback.complaints import member_view, service
from feedback.complaints.schemas import (
    ActionIn,
    ComplaintIn,
    ComplaintOut,
    ComplaintPage,
    MemberComplaintOut,
    MemberComplaintPage,
)
from feedback.db import idempotency_keys
from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from loyalty_shared.idempotency import IdempotencyKey, once

router = APIRouter(prefix="/v1/complaints", tags=["complaints"])
# /v1/members/{member_id}/complaints (the gateway sends it here: routing.MEMBER_SUBRESOURCES)
member_router = APIRouter(prefix="/v1/members", tags=["complaints"])
MemberId = Annotated[str, Path(min_length=1, max_length=128, description="The shop's customer id")]

Status = Literal["open", "acknowledged", "in_progress", "escalated", "resolved", "closed"]
OperatorId = Annotated[
    str,
    Header(
        alias="X-Operator-Id",
        min_length=1,
        max_length=128,
        description="the agent taking the action (the gateway sets it from the API key)",
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ComplaintOut | MemberComplaintOut,
    summary="Open a complaint; the answer carries its SLA deadlines",
    description="A member token gets the complaint as its member sees it "
    "(`MemberComplaintOut`: no severity or cause from ops, owner, value tier, SLA policies "
    "or history); other callers the full complaint.",
    responses={
        429: {
            "description": "The member opened as many complaints in 24 hours as allowed "
            "(complaint-limit-reached; retry_after_seconds says when)"
        }
    },
)
async def open_complaint(
    body: ComplaintIn,
    session: Session,
    request: Request,
    now: Now,
    idempotency_key: IdempotencyKey,
    caller: CurrentCaller,
    operator: Annotated[str | None, Header(alias="X-Operator-Id", max_length=128)] = None,
) -> ComplaintOut | MemberComplaintOut:
    opened = await once(
        session,
        idempotency_keys,
        "open-complaint",
        idempotency_key,
        body.model_dump(mode="json"),
        ComplaintOut,
        lambda: service.open_complaint(
            session, request.app.state.settings, body, now, opened_by=operator, caller=caller
        ),
    )
    return member_view.for_member(opened) if caller.is_member else opened


@router.get("", response_model=ComplaintPage, summary="The complaint queue, newest first")
async def list_complaints(
    session: Session,
    request: Request,
    now: Now,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    member_id: Annotated[str | None, Query(max_length=128)] = None,
    breached: bool | None = None,
    owner: Annotated[str | None, Query(max_length=128)] = None,
    due_before: Annotated[
        datetime | None, Query(description="a running clock is due before this instant")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ComplaintPage:
    return await service.list_complaints(
        session,
        service.View.of(request.app.state.settings, now),
        status=status_,
        member_id=member_id,
        limit=limit,
        cursor=cursor,
        breached=breached,
        owner=owner,
        due_before=due_before,
    )


@router.get(
    "/{complaint_id}", response_model=ComplaintOut, summary="One complaint with its history"
)
async def get_complaint(
    complaint_id: str, session: Session, request: Request, now: Now
) -> ComplaintOut:
    return await service.get_complaint(
        session, complaint_id, service.View.of(request.app.state.settings, now)
    )


@router.post(
    "/{complaint_id}/actions",
    response_model=ComplaintOut,
    summary="Act on a complaint (state machine); illegal -> 409 naming allowed actions",
    responses={
        403: {"description": "hand_over by someone other than the owner"},
        409: {"description": "Illegal transition: the body has current_state and allowed_actions"},
    },
)
async def take_action(
    complaint_id: str,
    body: ActionIn,
    session: Session,
    request: Request,
    operator: OperatorId,
    now: Now,
    idempotency_key: IdempotencyKey,
) -> ComplaintOut:
    return await once(
        session,
        idempotency_keys,
        "complaint-action",
        idempotency_key,
        {"complaint_id": complaint_id, "actor": operator, **body.model_dump(mode="json")},
        ComplaintOut,
        lambda: service.take_action(
            session, request.app.state.settings, complaint_id, body, operator, now
        ),
    )


@member_router.get(
    "/{member_id}/complaints",
    response_model=MemberComplaintPage,
    summary="A member's own complaints, newest first (what the member sees)",
    description="For the member's app (member token, its own id) and ops. Each complaint "
    "as its member sees it; ops' full view of them is `GET /v1/complaints?member_id=`.",
    responses={422: {"description": "A cursor this API did not give, or a bad limit"}},
)
async def list_member_complaints(
    member_id: MemberId,
    session: Session,
    request: Request,
    now: Now,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> MemberComplaintPage:
    return await member_view.member_complaints(
        session,
        service.View.of(request.app.state.settings, now),
        member_id,
        limit=limit,
        cursor=cursor,
    )
