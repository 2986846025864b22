from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import Response

from loyalty_shared.db import Session
from points.idempotency.dependencies import Idempotency, RequiredIdempotency
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
    responses={404: {"description": "No such redemption"}},
)
async def cancel_redemption(
    redemption_id: Annotated[str, Path(min_length=1, max_length=64)],
    session: Session,
    request: Request,
    idempotency: Idempotency,
) -> Response:
    settings = request.app.state.settings

    async def produce() -> tuple[CancelOut, int]:
        return await service.cancel(session, settings, redemption_id), status.HTTP_200_OK

    return await idempotency.run(session, None, produce)
