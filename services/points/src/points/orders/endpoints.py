from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Request, status
from fastapi.responses import Response

from loyalty_shared.db import HotTransaction, Session, pool_slot
from loyalty_shared.idempotency import HEADER_PARAMETER, IdempotencyGuard
from loyalty_shared.keyed_batches import KeyedBatches
from loyalty_shared.lean import fast_lane, json_body, json_response, read_json
from points.db import Idempotency, idempotency_guards
from points.identifiers import ClientId
from points.orders import batch, service
from points.orders.realtime import check_order_time
from points.orders.schemas import OrderBatchIn, OrderBatchOut, OrderIn, OrderOut
from points.refunds import service as refunds
from points.refunds.schemas import RefundIn, RefundOut

router = APIRouter(prefix="/v1/orders", tags=["orders"])
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
    # pydantic in one pass, the header read directly, and the transaction opened here
    # (committed before the response, as the Session dependency does).
    body = await read_json(request, OrderIn)
    state = request.app.state
    await check_order_time(state.time_bounds, state.enrolment_times, state.engine, body)
    idempotency = idempotency_guards.from_request(request)
    if idempotency.key is None:
        checkouts: KeyedBatches[str, OrderIn, OrderOut] = request.app.state.checkouts
        out = await checkouts.submit(body.member_id, body)
        return json_response(out, status.HTTP_201_CREATED)
    # a stored Idempotency-Key answer needs the transaction
    async with request.app.state.member_locks.hold(body.member_id):
        return await _record_order_locked(request.app, body, idempotency)


async def _record_order_locked(
    app: FastAPI, body: OrderIn, idempotency: IdempotencyGuard
) -> Response:
    state = app.state
    async with HotTransaction(state.engine) as session:

        async def produce() -> tuple[OrderOut, int]:
            out = await service.record_order(session, state.settings, body, cache=state.rules_cache)
            return out, status.HTTP_201_CREATED

        return await idempotency.run(session, body, produce)


def checkout_batches(app: FastAPI) -> KeyedBatches[str, OrderIn, OrderOut]:
    """Checkouts without an Idempotency-Key, one member's taken together under a burst.

    One checkout of a member is recorded at once, by the optimistic path (one or two
    statements, no transaction block) or else the locked one. Checkouts of the same member
    that arrive meanwhile queue, and are then recorded in batches: one transaction, the
    member's balance row locked once, each order as the locked path records it, one
    ``COMMIT`` (one WAL flush) for the batch. A batch is all or nothing: if any of its
    orders fails (a 409, a 422, a lost connection), it is rolled back and each order is
    recorded on its own, so an order's answer never depends on the others in its batch.
    """
    state = app.state

    async def one(body: OrderIn) -> OrderOut:
        # one pool slot for the whole checkout: one that the optimistic path leaves to the
        # locked path does not queue for a connection a second time
        async with state.member_locks.hold(body.member_id), pool_slot(state.engine):
            out = await service.record_order_optimistic(
                state.engine,
                state.settings,
                body,
                state.rules_cache,
                remembered=state.order_facts,
                slot_held=True,
            )
            if out is not None:
                return out
            async with HotTransaction(state.engine, slot_held=True) as session:
                return await service.record_order(
                    session, state.settings, body, cache=state.rules_cache
                )

    async def batch(bodies: list[OrderIn]) -> list[OrderOut | BaseException]:
        member = bodies[0].member_id
        state.order_facts.forget(member)
        try:
            async with state.member_locks.hold(member), HotTransaction(state.engine) as session:
                return [
                    await service.record_order(session, state.settings, b, cache=state.rules_cache)
                    for b in bodies
                ]
        except Exception:  # rolled back: each on its own, with its own answer or error
            outcomes: list[OrderOut | BaseException] = []
            for b in bodies:
                try:
                    outcomes.append(await one(b))
                except Exception as error:
                    outcomes.append(error)
            return outcomes

    return KeyedBatches(one, batch)


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
        result = await batch.import_orders(
            session,
            request.app.state.settings,
            body.orders,
            enrol_missing=body.enrol_missing,
            cache=request.app.state.rules_cache,
        )
        out = OrderBatchOut.model_validate(
            {"created": result.created, "duplicates": result.duplicates, "failed": result.failed}
        )
        return out, status.HTTP_200_OK

    return await idempotency.run(session, body, produce)


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
