"""The history import's request and answer (``POST /v1/orders/batch``)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


class BatchFailure(BaseModel):
    index: int = Field(description="Position of the row in `orders`")
    problem: dict[str, Any] = Field(description="Problem details (RFC 9457) for that row")


class OrderBatchOut(BaseModel):
    created: int
    duplicates: int = Field(description="Orders already recorded with the same body")
    failed: list[BatchFailure]
