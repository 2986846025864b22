from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import Response

from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from loyalty_shared.problems import forbidden_response
from points.db import Idempotency, RequiredIdempotency
from points.identifiers import ClientId
from points.redemptions import service
from points.redemptions.schemas import CancelOut, RedemptionIn, RedemptionOut

router = APIRouter(prefix="/v1", tags=["redemptions"])


@router.post(
    "/members/{member_id}/redemptions",
    status_code=status.HTTP_201_CREATED,
    response_model=RedemptionOut,
    summary="Spend points on a reward or as an order discount (oldest-expiring lots first)",
    responses={
        404: {"description": "No such member"},
        409: {"description": "insufficient-points, out-of-stock, points-in-debt, or key reused"},
        422: {"description": "Invalid body or unknown reward"},
        428: {"description": "Idempotency-Key header missing"},
    },
)
async def redeem(
    member_id: Annotated[ClientId, Path()],
    body: RedemptionIn,
    session: Session,
    request: Request,
    idempotency: RequiredIdempotency,
) -> Response:
    settings = request.app.state.settings

    async def produce() -> tuple[RedemptionOut, int]:
        result = await service.redeem(session, settings, member_id, body)
        return result, status.HTTP_201_CREATED

    return await idempotency.run(session, body, produce)


@router.post(
    "/redemptions/{redemption_id}/cancel",
    response_model=CancelOut,
    summary="Cancel a redemption: the points go back (same lots unless expired meanwhile)",
    description="A member token cancels only its own redemption: another member's, or one "
    "that does not exist, is the same 403 the gateway gives a member naming another member.",
    responses={
        403: {"description": "A member token: not the member's own redemption (or none)"},
        404: {"description": "No such redemption"},
    },
)
async def cancel_redemption(
    redemption_id: Annotated[str, Path(min_length=1, max_length=64)],
    session: Session,
    request: Request,
    idempotency: Idempotency,
    caller: CurrentCaller,
) -> Response:
    if caller.is_member and (
        caller.member_id is None
        or await service.member_of(session, redemption_id) != caller.member_id
    ):
        # one answer whether the redemption is another member's or does not exist
        return forbidden_response()
    settings = request.app.state.settings

    async def produce() -> tuple[CancelOut, int]:
        return await service.cancel(session, settings, redemption_id), status.HTTP_200_OK

    return await idempotency.run(session, None, produce)
