from fastapi import APIRouter, Request, status

from loyalty_shared.db import Session
from points.orders import service
from points.orders.schemas import OrderIn, OrderOut

router = APIRouter(prefix="/v1/orders", tags=["orders"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    summary="Record a completed order and earn its points (idempotent by order_id)",
    responses={
        409: {"description": "order_id already recorded with a different body"},
        422: {"description": "Invalid order or unknown member"},
    },
)
async def record_order(body: OrderIn, session: Session, request: Request) -> OrderOut:
    return await service.record_order(session, request.app.state.settings, body)
