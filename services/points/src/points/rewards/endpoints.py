from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import Response

from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from points.db import Idempotency
from points.identifiers import ClientId
from points.rewards import service
from points.rewards.schemas import (
    CataloguePage,
    CatalogueReward,
    RewardIn,
    RewardKind,
    RewardOut,
    RewardPage,
    RewardPatch,
)

router = APIRouter(prefix="/v1/rewards", tags=["rewards"])

RewardId = Annotated[ClientId, Path()]


@router.get(
    "",
    response_model=RewardPage | CataloguePage,
    summary="The rewards catalogue (storefront, ops; a member token: the member's catalogue)",
    description="A member token gets the catalogue a member may see (`CataloguePage`): "
    "active rewards only, in stock or not (`in_stock`), without stock counts, the active flag "
    "or creation times. Other callers get the catalogue as ops keep it (`RewardPage`).",
)
async def list_rewards(
    session: Session,
    caller: CurrentCaller,
    active: Annotated[bool | None, Query(description="Filter on the active flag")] = None,
    kind: Annotated[RewardKind | None, Query()] = None,
    available: Annotated[
        bool, Query(description="Only active rewards with stock left (or unlimited)")
    ] = False,
    after: Annotated[str | None, Query(max_length=128, description="Cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RewardPage | CataloguePage:
    if caller.is_member:
        return await service.member_catalogue(
            session, active=active, kind=kind, available=available, after=after, limit=limit
        )
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
    response_model=RewardOut | CatalogueReward,
    summary="One reward (a member token: as the member's catalogue shows it)",
    responses={404: {"description": "No such reward (for a member token: none active)"}},
)
async def get_reward(
    reward_id: RewardId, session: Session, caller: CurrentCaller
) -> RewardOut | CatalogueReward:
    if caller.is_member:
        return await service.member_reward(session, reward_id)
    return await service.get(session, reward_id)


@router.patch(
    "/{reward_id}",
    response_model=RewardOut,
    summary="Change stock, cost, active flag or texts (ops)",
    responses={404: {"description": "No such reward"}},
)
async def patch_reward(reward_id: RewardId, body: RewardPatch, session: Session) -> RewardOut:
    return await service.patch(session, reward_id, body)
