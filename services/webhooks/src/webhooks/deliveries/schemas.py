from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class AttemptOut(BaseModel):
    attempt: int
    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's answer; null: none came")
    latency_ms: int
    error: str | None = Field(description="Why it did not deliver (the answer's first bytes)")
    outcome: str = Field(description="delivered, retry or failed")
    next_attempt_at: datetime | None


class DeliveryOut(BaseModel):
    id: int
    subscription_id: str
    event_id: str = Field(description="The CloudEvent id: the receiver's dedupe key")
    event_type: str
    member_id: str | None
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="When pending: the next attempt")
    give_up_at: datetime
    delivered_at: datetime | None
    finished_at: datetime | None
    last_status_code: int | None
    last_error: str | None


class DeliveryDetail(DeliveryOut):
    attempt_log: list[AttemptOut]
    event: dict[str, Any] = Field(description="The request body: the CloudEvents envelope")


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class Queued(BaseModel):
    delivery_id: int
    event_id: str
    status: DeliveryStatus
