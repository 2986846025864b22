from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, status
from fastapi.responses import Response

from loyalty_shared.db import Session
from points.adjustments import service
from points.adjustments.schemas import AdjustmentIn, AdjustmentOut
from points.db import RequiredIdempotency
from points.errors import OperatorRequired
from points.identifiers import ClientId

router = APIRouter(prefix="/v1/members", tags=["adjustments"])

OperatorHeader = Annotated[
    str | None,
    Header(
        alias="X-Operator-Id",
        min_length=1,
        max_length=128,
        description="Who makes the adjustment (set by the gateway from the API key)",
    ),
]


@router.post(
    "/{member_id}/adjustments",
    status_code=status.HTTP_201_CREATED,
    response_model=AdjustmentOut,
    summary="Add or remove points by hand (ops): a ledger row with reason and operator",
    responses={
        404: {"description": "No such member"},
        409: {"description": "Removing more than is spendable, or key reused"},
        422: {"description": "Invalid body or no operator"},
        428: {"description": "Idempotency-Key header missing"},
    },
)
async def adjust(
    member_id: Annotated[ClientId, Path()],
    body: AdjustmentIn,
    session: Session,
    request: Request,
    idempotency: RequiredIdempotency,
    operator: OperatorHeader = None,
) -> Response:
    if operator is None or not operator.strip():
        raise OperatorRequired(
            "Manual adjustments need the operator's id in the X-Operator-Id header",
            errors=[{"field": "header.X-Operator-Id", "message": "header is required"}],
        )
    settings = request.app.state.settings
    who = operator.strip()

    async def produce() -> tuple[AdjustmentOut, int]:
        result = await service.adjust(session, settings, member_id, body, who)
        return result, status.HTTP_201_CREATED

    return await idempotency.run(session, body, produce)
