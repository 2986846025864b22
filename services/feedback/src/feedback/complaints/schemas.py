from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Channel(StrEnum):
    phone = "phone"
    online_chat = "online_chat"
    email = "email"
    app = "app"
    web = "web"
    store = "store"
    social = "social"


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class ComplaintIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$")
    channel: Channel
    category: str = Field(min_length=1, max_length=64)
    description: str = Field(min_length=1, max_length=10_000)
    order_id: str | None = Field(default=None, max_length=128)
    severity: Severity = Severity.medium


class ComplaintOut(BaseModel):
    id: str
    member_id: str
    channel: Channel
    category: str
    description: str
    order_id: str | None
    severity: Severity
    status: str
    created_at: datetime
    first_response_due_at: datetime
    resolution_due_at: datetime


class ComplaintPage(BaseModel):
    items: list[ComplaintOut]
    next_cursor: str | None
