from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query

from feedback.clock import Now
from feedback.db import idempotency_keys
from feedback.followups import service
from feedback.followups.schemas import (
    AssignIn,
    FollowUpOut,
    FollowUpPage,
    FollowUpStatus,
    OutcomeIn,
    Reason,
)
from loyalty_shared.db import Session
from loyalty_shared.idempotency import IdempotencyKey, once

router = APIRouter(prefix="/v1/follow-ups", tags=["follow-ups"])

OperatorId = Annotated[str, Header(alias="X-Operator-Id", min_length=1, max_length=128)]


@router.get("", response_model=FollowUpPage, summary="Follow-up visits, soonest due first")
async def list_follow_ups(
    session: Session,
    due_before: datetime | None = None,
    status: FollowUpStatus | None = None,
    owner: Annotated[str | None, Query(max_length=128)] = None,
    member_id: Annotated[str | None, Query(max_length=128)] = None,
    reason: Reason | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> FollowUpPage:
    return await service.list_follow_ups(
        session,
        due_before=due_before,
        status=status.value if status else None,
        owner=owner,
        member_id=member_id,
        reason=reason.value if reason else None,
        limit=limit,
        cursor=cursor,
    )


@router.get("/{follow_up_id}", response_model=FollowUpOut, summary="One follow-up visit")
async def get_follow_up(follow_up_id: str, session: Session) -> FollowUpOut:
    return await service.get_follow_up(session, follow_up_id)


@router.post(
    "/{follow_up_id}/assign",
    response_model=FollowUpOut,
    summary="Give the visit to an agent",
    responses={409: {"description": "The follow-up already has an outcome"}},
)
async def assign(follow_up_id: str, body: AssignIn, session: Session) -> FollowUpOut:
    return await service.assign(session, follow_up_id, body)


@router.post(
    "/{follow_up_id}/outcome",
    response_model=FollowUpOut,
    summary="Record the visit's outcome and whether the problem was rectified",
    responses={409: {"description": "The follow-up already has an outcome"}},
)
async def record_outcome(
    follow_up_id: str,
    body: OutcomeIn,
    session: Session,
    operator: OperatorId,
    now: Now,
    idempotency_key: IdempotencyKey,
) -> FollowUpOut:
    return await once(
        session,
        idempotency_keys,
        "follow-up-outcome",
        idempotency_key,
        {"follow_up_id": follow_up_id, "actor": operator, **body.model_dump(mode="json")},
        FollowUpOut,
        lambda: service.record_outcome(session, follow_up_id, body, operator, now),
    )
