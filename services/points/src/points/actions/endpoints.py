from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import Response

from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from points.actions import flows
from points.actions.schemas import CheckInIn, CheckInOut, InteractionIn, InteractionOut
from points.db import Idempotency
from points.identifiers import ClientId

router = APIRouter(tags=["actions"])


@router.post(
    "/v1/members/{member_id}/check-ins",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckInOut,
    summary="Daily check-in (once per local day in the member's time zone)",
    responses={
        202: {
            "description": "Checked in, but it earns nothing (capped, rule disabled...): "
            "points 0 and the reason",
            "model": CheckInOut,
        },
        404: {"description": "No such member"},
        409: {"description": "Already checked in that day (already-checked-in)"},
        422: {
            "description": "occurred_at outside the accepted window, or given by a member token "
            "(time-out-of-bounds)"
        },
    },
)
async def check_in(
    member_id: Annotated[ClientId, Path()],
    session: Session,
    request: Request,
    idempotency: Idempotency,
    caller: CurrentCaller,
    body: CheckInIn | None = None,
) -> Response:
    data = body or CheckInIn()

    async def produce() -> tuple[CheckInOut, int]:
        out = await flows.check_in(
            session,
            request.app.state.settings,
            request.app.state.rules_cache,
            member_id,
            data,
            caller=caller,
        )
        # like every capped action: accepted (the day is taken) and earning 0, saying why
        return out, status.HTTP_201_CREATED if out.points > 0 else status.HTTP_202_ACCEPTED

    return await idempotency.run(session, data, produce)


@router.post(
    "/v1/interactions",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InteractionOut,
    summary="Record a member interaction (review, share, ...); earns points where a rule applies",
    responses={
        409: {"description": "event_id already sent with a different body"},
        422: {
            "description": "Invalid interaction, unknown member, attributes too large, or "
            "occurred_at outside the accepted window"
        },
    },
)
async def record_interaction(
    body: InteractionIn, session: Session, request: Request, idempotency: Idempotency
) -> Response:
    async def produce() -> tuple[InteractionOut, int]:
        out = await flows.record_interaction(
            session, request.app.state.settings, request.app.state.rules_cache, body
        )
        return out, status.HTTP_202_ACCEPTED

    return await idempotency.run(session, body, produce)
