from typing import Annotated

from fastapi import APIRouter, Path, Query

from loyalty_shared.db import Session
from points.identifiers import ClientId
from points.ledger import queries
from points.ledger.schemas import LedgerPage

router = APIRouter(prefix="/v1/members", tags=["ledger"])


@router.get(
    "/{member_id}/ledger",
    response_model=LedgerPage,
    summary="The member's ledger, newest first (cursor paging)",
    responses={404: {"description": "No such member"}},
)
async def member_ledger(
    member_id: Annotated[ClientId, Path()],
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> LedgerPage:
    return await queries.ledger_page(
        session, member_id, limit=limit, before=int(cursor) if cursor else None
    )
