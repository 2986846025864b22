"""The tier ladder as data: what ops PUT, what everyone GETs, what the rules read."""

import itertools
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

TierCode = Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z][a-z0-9_]{0,63}$")]

GrowthPointType = Literal["purchase", "tier_bonus", "campaign_bonus", "action", "adjustment"]
"""Kinds of credited points; the ladder lists which of them count toward growth value.

``purchase``: base points of an order; ``tier_bonus``: the extra points a tier multiplier
adds; ``campaign_bonus``: points a campaign adds; ``action``: check-ins, reviews, referrals...
(each earning rule also says whether its points count); ``adjustment``: manual adjustments.
"""

DEFAULT_GROWTH_POINT_TYPES: tuple[GrowthPointType, ...] = ("purchase", "action")

EvaluationPolicy = Literal["anniversary", "calendar_year"]


class Benefits(BaseModel):
    """What a tier gives; the points multiplier is the tier's own ``multiplier``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    discount_percent: Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)] = (
        Decimal("0")
    )
    free_shipping: bool = False
    birthday_gift: bool = False
    early_access: bool = False
    priority_service: bool = False
    dedicated_advisor: bool = False
    home_service: bool = False


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: TierCode = Field(description="Stable identifier stored on members, e.g. 'gold'")
    name: str = Field(min_length=1, max_length=64, description="Display name, e.g. 'Gold'")
    threshold: int = Field(ge=0, description="Growth value needed to hold this tier")
    multiplier: Annotated[Decimal, Field(ge=1, le=10, max_digits=6, decimal_places=3)] = Decimal(
        "1"
    )
    benefits: Benefits = Benefits()


class TierLadderIn(BaseModel):
    """The whole ladder, lowest tier first; PUT replaces it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: list[Tier] = Field(min_length=1, max_length=20, description="Lowest tier first")
    rolling_window_days: int = Field(
        default=365, ge=1, le=3660, description="Growth value counts credits of the last N days"
    )
    growth_point_types: list[GrowthPointType] = Field(
        default_factory=lambda: list(DEFAULT_GROWTH_POINT_TYPES),
        max_length=len(get_args(GrowthPointType)),
        description="Which credited points count toward growth value",
    )
    downgrade_grace_days: int = Field(
        default=30, ge=0, le=366, description="Days after an evaluation before a downgrade applies"
    )
    evaluation_policy: EvaluationPolicy = Field(
        default="anniversary",
        description="When downgrades are evaluated: on the membership anniversary or on 1 Jan",
    )

    @field_validator("tiers")
    @classmethod
    def _well_ordered(cls, tiers: list[Tier]) -> list[Tier]:
        if tiers[0].threshold != 0:
            raise ValueError("the first (lowest) tier must have threshold 0")
        codes = [t.code for t in tiers]
        if len(set(codes)) != len(codes):
            raise ValueError("tier codes must be unique")
        names = [t.name.casefold() for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        for lower, higher in itertools.pairwise(tiers):
            if higher.threshold <= lower.threshold:
                raise ValueError(
                    f"thresholds must increase: {higher.code!r} ({higher.threshold}) "
                    f"after {lower.code!r} ({lower.threshold})"
                )
        return tiers

    @field_validator("growth_point_types")
    @classmethod
    def _unique_types(cls, types: list[GrowthPointType]) -> list[GrowthPointType]:
        if len(set(types)) != len(types):
            raise ValueError("point types must be unique")
        return types


class TierLadder(TierLadderIn):
    """The stored ladder with its version (incremented by every PUT)."""

    version: int
    updated_at: datetime


class TierLadderUpdated(TierLadder):
    members_upgraded: int = Field(
        description="Members upgraded at once because the new thresholds qualify them"
    )
