from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from points.campaigns.calculator import CampaignKind
from points.identifiers import ClientId
from points.tiers.schemas import TierCode

Stacking = Literal["stackable", "exclusive"]
Multiplier = Annotated[Decimal, Field(gt=1, le=10, max_digits=6, decimal_places=3)]
BonusPoints = Annotated[int, Field(ge=1, le=10_000_000)]
Threshold = Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
Category = Annotated[str, Field(min_length=1, max_length=128)]


class CampaignFields(BaseModel):
    """Everything but the id and the kind; kind-specific fields are checked against the kind."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    starts_at: AwareDatetime
    ends_at: AwareDatetime = Field(description="Exclusive end; must be after starts_at")
    stacking: Stacking = "stackable"
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher wins")
    active: bool = True
    eligible_tiers: list[TierCode] = Field(
        default_factory=list, max_length=20, description="Empty: every tier"
    )
    categories: list[Category] = Field(
        default_factory=list, max_length=200, description="category_multiplier only"
    )
    multiplier: Multiplier | None = Field(
        default=None, description="category_multiplier only: 2 = double points"
    )
    bonus_points: BonusPoints | None = Field(
        default=None, description="first_order_bonus, spend_threshold_bonus, fixed_bonus"
    )
    threshold: Threshold | None = Field(
        default=None, description="spend_threshold_bonus only: minimum paid amount"
    )


class CampaignIn(CampaignFields):
    campaign_id: ClientId = Field(description="Chosen by ops; POST is idempotent by it")
    kind: CampaignKind


class CampaignPatch(BaseModel):
    """Any subset of the fields; the kind and the id cannot change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    stacking: Stacking | None = None
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    active: bool | None = None
    eligible_tiers: list[TierCode] | None = Field(default=None, max_length=20)
    categories: list[Category] | None = Field(default=None, max_length=200)
    multiplier: Multiplier | None = None
    bonus_points: BonusPoints | None = None
    threshold: Threshold | None = None


class CampaignOut(CampaignIn):
    model_config = ConfigDict(extra="ignore")

    created_at: datetime
    updated_at: datetime


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None = Field(description="Pass as `after` to get the next page")


class CampaignReplace(CampaignFields):
    """PUT body: the whole definition except the id."""

    kind: CampaignKind


class PreviewItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str | None = Field(default=None, max_length=128)
    unit_price: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
    quantity: int = Field(ge=1, le=100_000)


class CampaignPreviewIn(BaseModel):
    """An order as the order flow would see it; nothing is recorded."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
    occurred_at: AwareDatetime | None = Field(default=None, description="Default: now")
    member_tier: TierCode = "regular"
    is_first_order: bool = False
    items: list[PreviewItem] = Field(default_factory=list, max_length=500)


class CampaignLineOut(BaseModel):
    campaign_id: str
    kind: CampaignKind
    points: int


class CampaignPreviewOut(BaseModel):
    base_points: int = Field(description="amount x earn rate, rounded down")
    tier_multiplier: Decimal
    bonus_points: int = Field(description="What the running campaigns add")
    applied: list[str]
    excluded: list[str] = Field(description="Eligible but outranked (exclusivity)")
    lines: list[CampaignLineOut]
