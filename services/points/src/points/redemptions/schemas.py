from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from points.identifiers import ClientId
from points.ledger.schemas import BalanceAfter


class RedemptionIn(BaseModel):
    """Either a catalogue reward (``reward_id``, ``quantity``) or ``points`` off an order."""

    model_config = ConfigDict(extra="forbid")

    reward_id: str | None = Field(default=None, min_length=1, max_length=128)
    quantity: int | None = Field(default=None, ge=1, le=1000)
    points: int | None = Field(default=None, ge=1, le=100_000_000)
    order_id: ClientId | None = Field(
        default=None, description="The order the points discount (with `points`)"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> "RedemptionIn":
        if (self.reward_id is None) == (self.points is None):
            raise ValueError("give either reward_id (with an optional quantity) or points")
        if self.reward_id is not None and self.order_id is not None:
            raise ValueError("order_id goes with points, not with reward_id")
        if self.points is not None and self.quantity is not None:
            raise ValueError("quantity goes with reward_id, not with points")
        return self


class RedemptionLot(BaseModel):
    lot_id: int
    points: int


class RedemptionOut(BaseModel):
    redemption_id: str
    member_id: str
    reward_id: str | None
    quantity: int | None
    order_id: str | None
    points_spent: int
    lots: list[RedemptionLot]
    status: str
    balance: BalanceAfter
    created_at: datetime


class CancelOut(BaseModel):
    redemption_id: str
    member_id: str
    points_returned: int
    returned_to_same_lots: int = Field(description="Points put back into their original lots")
    returned_as_new_lots: int = Field(
        description="Points whose lot had expired meanwhile: credited as a new lot"
    )
    status: str
    balance: BalanceAfter
    cancelled_at: datetime
