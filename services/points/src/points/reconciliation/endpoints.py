from typing import Annotated

from fastapi import APIRouter, Query

from loyalty_shared.db import Session
from points.reconciliation.schemas import LedgerReport
from points.reconciliation.service import verify_ledger

router = APIRouter(tags=["ledger"])


@router.get(
    "/v1/ops/ledger/verify",
    response_model=LedgerReport,
    summary="Recompute every balance from the entries and lots and report any drift (admin)",
)
async def verify(
    session: Session, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
) -> LedgerReport:
    return await verify_ledger(session, limit=limit)  # one read-only statement
