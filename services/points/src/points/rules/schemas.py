from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ActionType = Literal[
    "check_in",
    "review",
    "share",
    "activity",
    "survey",
    "birthday",
    "referral_referrer",
    "referral_new_member",
    "login",
    "page_view",
]
ACTION_TYPES: tuple[ActionType, ...] = (
    "check_in",
    "review",
    "share",
    "activity",
    "survey",
    "birthday",
    "referral_referrer",
    "referral_new_member",
    "login",
    "page_view",
)


class EarningRuleFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    points: int = Field(ge=0, le=1_000_000, description="Points one action earns")
    daily_cap: int | None = Field(
        default=None, ge=0, le=100_000_000, description="Max points per local day; null: none"
    )
    monthly_cap: int | None = Field(
        default=None, ge=0, le=100_000_000, description="Max points per local month; null: none"
    )
    enabled: bool = True
    counts_toward_growth: bool = Field(
        default=False, description="Whether these points add to growth value (tiers)"
    )

    @model_validator(mode="after")
    def _caps_consistent(self) -> "EarningRuleFields":
        if (
            self.daily_cap is not None
            and self.monthly_cap is not None
            and self.daily_cap > self.monthly_cap
        ):
            raise ValueError("daily_cap cannot exceed monthly_cap")
        return self


class EarningRule(EarningRuleFields):
    action: ActionType


class EarningRulesIn(BaseModel):
    """PUT: the rules listed replace those actions' rules; actions not listed keep theirs."""

    model_config = ConfigDict(extra="forbid")

    rules: list[EarningRule] = Field(min_length=1, max_length=len(ACTION_TYPES))

    @field_validator("rules")
    @classmethod
    def _one_per_action(cls, rules: list[EarningRule]) -> list[EarningRule]:
        actions = [r.action for r in rules]
        if len(set(actions)) != len(actions):
            raise ValueError("each action may appear once")
        return rules


class EarningRuleOut(EarningRule):
    updated_at: datetime


class EarningRulesOut(BaseModel):
    rules: list[EarningRuleOut]
