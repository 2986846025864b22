from fastapi import APIRouter, Request

from loyalty_shared.db import Session
from points.tiers import service
from points.tiers.schemas import TierLadder, TierLadderIn, TierLadderUpdated

router = APIRouter(prefix="/v1/tiers", tags=["tiers"])


@router.get("", response_model=TierLadder, summary="The tier ladder (anyone authenticated)")
async def get_tiers(session: Session) -> TierLadder:
    return await service.load_ladder(session)


@router.put(
    "",
    response_model=TierLadderUpdated,
    summary="Replace the tier ladder (ops); qualifying members are upgraded at once",
    responses={
        409: {"description": "A removed tier code is still held by members (tier-in-use)"},
        422: {"description": "Invalid ladder (thresholds, codes, first tier threshold 0...)"},
    },
)
async def put_tiers(body: TierLadderIn, session: Session, request: Request) -> TierLadderUpdated:
    updated = await service.replace_ladder(session, body)
    request.app.state.rules_cache.invalidate()  # other processes: within the cache's TTL
    return updated
