"""Catalogue management. The ``rewards`` table belongs to redemptions (stock is decremented
there, conditionally, when points are redeemed); this module creates and edits entries."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import Conflict, NotFound, Unprocessable
from points.redemptions.models import Reward
from points.rewards.schemas import (
    CataloguePage,
    CatalogueReward,
    RewardIn,
    RewardOut,
    RewardPage,
    RewardPatch,
)

# a repeated POST with the same id is a replay when these match; stock and active move
# with redemptions and PATCHes, so they do not make a retry a conflict
_DEFINING_FIELDS = ("name", "description", "kind", "points_cost")
_NOT_NULL_ON_PATCH = ("name", "points_cost", "active")


class RewardNotFound(NotFound):
    slug = "reward-not-found"
    title = "Reward not found"


class RewardExists(Conflict):
    slug = "reward-exists"
    title = "Reward id already used with a different definition"


class InvalidReward(Unprocessable):
    slug = "validation-error"
    title = "Request validation failed"


def _out(row: Reward) -> RewardOut:
    return RewardOut.model_validate(row, from_attributes=True)


async def create(session: AsyncSession, data: RewardIn) -> tuple[RewardOut, bool]:
    inserted = (
        await session.execute(
            insert(Reward)
            .values(**data.model_dump())
            .on_conflict_do_nothing(index_elements=[Reward.reward_id])
            .returning(Reward)
        )
    ).scalar_one_or_none()
    if inserted is not None:
        return _out(inserted), True
    existing = await _row(session, data.reward_id)
    differs = [f for f in _DEFINING_FIELDS if getattr(existing, f) != getattr(data, f)]
    if differs:
        raise RewardExists(
            f"Reward {data.reward_id!r} already exists with a different {', '.join(differs)}; "
            "edit it with PATCH",
            reward_id=data.reward_id,
            fields=differs,
        )
    return _out(existing), False


async def _row(session: AsyncSession, reward_id: str) -> Reward:
    row = (
        await session.execute(select(Reward).where(Reward.reward_id == reward_id))
    ).scalar_one_or_none()
    if row is None:
        raise RewardNotFound(f"No reward with id {reward_id!r}", reward_id=reward_id)
    return row


async def get(session: AsyncSession, reward_id: str) -> RewardOut:
    return _out(await _row(session, reward_id))


async def patch(session: AsyncSession, reward_id: str, data: RewardPatch) -> RewardOut:
    """One conditional UPDATE: concurrent redemptions decrement stock under the same row lock."""
    changes = data.model_dump(exclude_unset=True)
    nulls = [f for f in _NOT_NULL_ON_PATCH if f in changes and changes[f] is None]
    if nulls:
        errors = [
            {"field": f"body.{f}", "message": "may not be null", "type": "value_error"}
            for f in nulls
        ]
        raise InvalidReward(f"{len(errors)} invalid field(s)", errors=errors)
    if not changes:
        return await get(session, reward_id)
    row = (
        await session.execute(
            update(Reward).where(Reward.reward_id == reward_id).values(**changes).returning(Reward)
        )
    ).scalar_one_or_none()
    if row is None:
        raise RewardNotFound(f"No reward with id {reward_id!r}", reward_id=reward_id)
    return _out(row)


async def list_rewards(
    session: AsyncSession,
    *,
    active: bool | None = None,
    kind: str | None = None,
    available: bool = False,
    after: str | None = None,
    limit: int = 50,
) -> RewardPage:
    query = select(Reward).order_by(Reward.reward_id).limit(limit + 1)
    if active is not None:
        query = query.where(Reward.active.is_(active))
    if kind is not None:
        query = query.where(Reward.kind == kind)
    if available:
        query = query.where(Reward.active.is_(True), (Reward.stock.is_(None)) | (Reward.stock > 0))
    if after is not None:
        query = query.where(Reward.reward_id > after)
    rows = list((await session.execute(query)).scalars().all())
    more = len(rows) > limit
    rows = rows[:limit]
    return RewardPage(
        items=[_out(r) for r in rows], next_cursor=rows[-1].reward_id if more else None
    )


# -- the member's catalogue (a member token) ------------------------------------------


def _for_member(reward: RewardOut) -> CatalogueReward:
    return CatalogueReward(
        reward_id=reward.reward_id,
        name=reward.name,
        description=reward.description,
        kind=reward.kind,
        points_cost=reward.points_cost,
        in_stock=reward.stock is None or reward.stock > 0,
    )


async def member_catalogue(
    session: AsyncSession,
    *,
    active: bool | None,
    kind: str | None,
    available: bool,
    after: str | None,
    limit: int,
) -> CataloguePage:
    """Active rewards only, in stock or not; ``active=false`` asks for what a member never sees."""
    if active is False:
        return CataloguePage(items=[], next_cursor=None)
    page = await list_rewards(
        session, active=True, kind=kind, available=available, after=after, limit=limit
    )
    return CataloguePage(items=[_for_member(r) for r in page.items], next_cursor=page.next_cursor)


async def member_reward(session: AsyncSession, reward_id: str) -> CatalogueReward:
    """An inactive reward does not exist for a member (404, as an unknown one)."""
    reward = await get(session, reward_id)
    if not reward.active:
        raise RewardNotFound(f"No reward with id {reward_id!r}", reward_id=reward_id)
    return _for_member(reward)
