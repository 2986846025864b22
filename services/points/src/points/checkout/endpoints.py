"""``POST /v1/orders``: parse, check the order's time, record the checkout, answer."""

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from loyalty_shared.hotpath.fast_lane import fast_lane
from loyalty_shared.idempotency import HEADER_PARAMETER
from loyalty_shared.lean import json_body, json_response, read_json
from points.checkout.realtime import check_order_time
from points.checkout.record import Checkout, record_checkout
from points.db import idempotency_guards
from points.orders.schemas import OrderIn, OrderOut

# checkout's route, matched ahead of every router (create_service_app's front_routers)
checkout_router = APIRouter(prefix="/v1/orders", tags=["orders"])


@checkout_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    summary="Record a completed order and earn its points (idempotent by order_id)",
    responses={
        409: {"description": "order_id (or Idempotency-Key) already used with a different body"},
        422: {
            "description": "Invalid order, unknown member, or occurred_at outside the real-time "
            "window (time-out-of-bounds: history goes through POST /v1/orders/batch)"
        },
    },
    openapi_extra={**json_body(OrderIn), "parameters": [HEADER_PARAMETER]},
)
@fast_lane()
async def record_order(request: Request) -> Response:
    # Checkout's hot path, so no FastAPI parameters: the body is parsed and validated by
    # pydantic in one pass and the header read directly; the checkout opens (and commits,
    # before the response) its own transactions.
    body = await read_json(request, OrderIn)
    state = request.app.state
    await check_order_time(state.time_bounds, state.enrolment_times, state.engine, body)
    checkout: Checkout = state.checkout
    answer = await record_checkout(checkout, body, idempotency_guards.from_request(request))
    if isinstance(answer, Response):  # a stored Idempotency-Key answer, or the first one
        return answer
    return json_response(answer, status.HTTP_201_CREATED)
