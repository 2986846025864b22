from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import Response

from loyalty_shared.db import Session
from points.idempotency.dependencies import Idempotency
from points.identifiers import ClientId
from points.rewards import service
from points.rewards.schemas import RewardIn, RewardKind, RewardOut, RewardPage, RewardPatch

router = APIRouter(prefix="/v1/rewards", tags=["rewards"])

RewardId = Annotated[ClientId, Path()]


@router.get("", response_model=RewardPage, summary="The rewards catalogue (storefront, ops)")
async def list_rewards(
    session: Session,
    active: Annotated[bool | None, Query(description="Filter on the active flag")] = None,
    kind: Annotated[RewardKind | None, Query()] = None,
    available: Annotated[
        bool, Query(description="Only active rewards with stock left (or unlimited)")
    ] = False,
    after: Annotated[str | None, Query(max_length=128, description="Cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RewardPage:
    return await service.list_rewards(
        session, active=active, kind=kind, available=available, after=after, limit=limit
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RewardOut,
    summary="Add a reward to the catalogue (ops; idempotent by reward_id)",
    responses={
        200: {"description": "Same id and definition already created", "model": RewardOut},
        409: {"description": "reward_id or Idempotency-Key already used with another body"},
    },
)
async def create_reward(body: RewardIn, session: Session, idempotency: Idempotency) -> Response:
    async def produce() -> tuple[RewardOut, int]:
        reward, created = await service.create(session, body)
        return reward, status.HTTP_201_CREATED if created else status.HTTP_200_OK

    return await idempotency.run(session, body, produce)


@router.get(
    "/{reward_id}",
    response_model=RewardOut,
    summary="One reward",
    responses={404: {"description": "No such reward"}},
)
async def get_reward(reward_id: RewardId, session: Session) -> RewardOut:
    return await service.get(session, reward_id)


@router.patch(
    "/{reward_id}",
    response_model=RewardOut,
    summary="Change stock, cost, active flag or texts (ops)",
    responses={404: {"description": "No such reward"}},
)
async def patch_reward(reward_id: RewardId, body: RewardPatch, session: Session) -> RewardOut:
    return await service.patch(session, reward_id, body)
