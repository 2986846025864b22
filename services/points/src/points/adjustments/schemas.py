from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from points.ledger.schemas import BalanceAfter


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(
        ge=-10_000_000, le=10_000_000, description="Points to add (positive) or remove (negative)"
    )
    reason: str = Field(min_length=3, max_length=500, description="Why: kept on the ledger row")

    @field_validator("points")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("an adjustment of 0 points changes nothing")
        return value

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason must not be blank")
        return value.strip()


class AdjustmentOut(BaseModel):
    adjustment_id: str
    member_id: str
    points: int
    reason: str
    operator: str
    balance: BalanceAfter
    created_at: datetime
