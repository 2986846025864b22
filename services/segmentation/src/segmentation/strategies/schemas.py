from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ValueGroup = Literal["high-value", "potential", "ordinary", "churn-risk"]
BehaviourGroup = Literal[
    "price-sensitive", "quality-seeking", "service-experience", "social-interactive"
]
Lifecycle = Literal["new", "growing", "mature", "sleeping", "churn-risk", "churned"]


class StrategyRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: str = Field(
        min_length=1, max_length=64, description="e.g. value:high-value, lifecycle:recall"
    )
    value_group: ValueGroup | None = Field(default=None, description="null = any")
    behaviour_group: BehaviourGroup | None = None
    lifecycle: Lifecycle | None = None
    strategies: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=20
    )


class StrategyRuleOut(StrategyRuleIn):
    id: int


class StrategyMatrixIn(BaseModel):
    rules: list[StrategyRuleIn] = Field(max_length=500)


class StrategyMatrixOut(BaseModel):
    rules: list[StrategyRuleOut]
