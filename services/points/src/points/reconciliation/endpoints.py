from typing import Annotated

from fastapi import APIRouter, Query, Request

from points.reconciliation.schemas import LedgerReport
from points.reconciliation.service import verify_ledger

router = APIRouter(tags=["ledger"])


@router.get(
    "/v1/ops/ledger/verify",
    response_model=LedgerReport,
    summary="Recompute every balance from the entries and lots and report any drift (admin)",
)
async def verify(
    request: Request, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
) -> LedgerReport:
    # one read-only statement on a connection of its own (no transaction to commit)
    async with request.app.state.engine.connect() as conn:
        return await verify_ledger(conn, limit=limit)
