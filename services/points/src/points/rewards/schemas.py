from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from points.identifiers import ClientId

RewardKind = Literal["product", "service", "coupon"]


class RewardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward_id: ClientId = Field(description="Chosen by ops; POST is idempotent by it")
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    kind: RewardKind
    points_cost: int = Field(gt=0, le=100_000_000)
    stock: int | None = Field(default=None, ge=0, le=100_000_000, description="null: unlimited")
    active: bool = True


class RewardPatch(BaseModel):
    """Any subset; ``stock: null`` makes the stock unlimited."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    points_cost: int | None = Field(default=None, gt=0, le=100_000_000)
    stock: int | None = Field(default=None, ge=0, le=100_000_000)
    active: bool | None = None


class RewardOut(RewardIn):
    model_config = ConfigDict(extra="ignore")

    created_at: datetime


class RewardPage(BaseModel):
    items: list[RewardOut]
    next_cursor: str | None = Field(description="Pass as `after` to get the next page")


class CatalogueReward(BaseModel):
    """A reward as a member token sees it: an active reward and whether it can be had now.

    No stock count, active flag or creation time: how many are left and what ops switched
    off are the shop's business (docs/gateway.md, "The member's own app")."""

    model_config = ConfigDict(extra="forbid")

    reward_id: str
    name: str
    description: str | None
    kind: RewardKind
    points_cost: int
    in_stock: bool = Field(description="false: none left for now (stock 0)")


class CataloguePage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CatalogueReward]
    next_cursor: str | None = Field(description="Pass as `after` to get the next page")
