from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import Response

from loyalty_shared.db import Session
from points.db import Idempotency
from points.identifiers import ClientId
from points.refunds import service as refunds
from points.refunds.schemas import RefundIn, RefundOut

# the checkout itself (POST /v1/orders): points.checkout.endpoints; the history import
# (POST /v1/orders/batch): points.imports.endpoints
router = APIRouter(prefix="/v1/orders", tags=["orders"])


@router.post(
    "/{order_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundOut,
    summary="Refund (part of) an order: its points are reversed proportionally, once per refund_id",
    responses={
        404: {"description": "No such order"},
        409: {"description": "refund_id (or Idempotency-Key) already used with a different body"},
        422: {"description": "Invalid refund, or refunds above the order amount"},
    },
)
async def refund_order(
    order_id: Annotated[ClientId, Path()],
    body: RefundIn,
    session: Session,
    request: Request,
    idempotency: Idempotency,
) -> Response:
    settings = request.app.state.settings

    async def produce() -> tuple[RefundOut, int]:
        result = await refunds.refund_order(session, settings, order_id, body)
        return result, status.HTTP_201_CREATED

    return await idempotency.run(session, body, produce)
