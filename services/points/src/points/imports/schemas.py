"""The history import's request and answer (``POST /v1/orders/batch``)."""

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from points.identifiers import ClientId
from points.refunds.schemas import RefundIn

MAX_BATCH = 1000


class OrderBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orders: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="Orders as for POST /v1/orders; each is validated alone (a bad row fails "
        "alone)",
    )
    enrol_missing: bool = Field(default=False, description="Enrol unknown members first")
    refunds: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_BATCH,
        description="Refunds as rows (RefundRowIn), recorded after this batch's orders in "
        "occurred_at order; each is validated alone (a bad row fails alone)",
    )


class RefundRowIn(RefundIn):
    """A past refund of an order: ``POST /v1/orders/{order_id}/refunds`` as a row."""

    order_id: ClientId = Field(description="The refunded order")
    occurred_at: AwareDatetime = Field(
        description="When the refund happened: any past time, not before the order"
    )


class BatchFailure(BaseModel):
    index: int = Field(description="Position of the row in `orders` (or `refunds`)")
    problem: dict[str, Any] = Field(description="Problem details (RFC 9457) for that row")


class OrderBatchOut(BaseModel):
    created: int
    duplicates: int = Field(description="Orders already recorded with the same body")
    failed: list[BatchFailure]
    refunded: int = Field(default=0, description="Refund rows recorded (or already recorded)")
    refunds_failed: list[BatchFailure] = Field(default_factory=list)
