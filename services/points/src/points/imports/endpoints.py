"""``POST /v1/orders/batch``: a shop's order history, up to 1,000 orders per call."""

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from loyalty_shared.db import Session
from points.db import Idempotency
from points.imports import service
from points.imports.schemas import OrderBatchIn, OrderBatchOut

router = APIRouter(prefix="/v1/orders", tags=["orders"])


@router.post(
    "/batch",
    status_code=status.HTTP_200_OK,
    response_model=OrderBatchOut,
    summary="Import order history (<= 1000 orders); each evaluated as of its own occurred_at",
    responses={422: {"description": "Not a batch (no orders, more than 1000...)"}},
)
async def import_orders(
    body: OrderBatchIn, session: Session, request: Request, idempotency: Idempotency
) -> Response:
    async def produce() -> tuple[OrderBatchOut, int]:
        result = await service.import_orders(
            session,
            request.app.state.settings,
            body.orders,
            enrol_missing=body.enrol_missing,
            refund_rows=body.refunds,
            cache=request.app.state.rules_cache,
        )
        out = OrderBatchOut.model_validate(
            {
                "created": result.created,
                "duplicates": result.duplicates,
                "failed": result.failed,
                "refunded": result.refunded,
                "refunds_failed": result.refunds_failed,
            }
        )
        return out, status.HTTP_200_OK

    return await idempotency.run(session, body, produce)
