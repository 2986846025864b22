from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loyalty_shared.contracts import WEBHOOK_EVENT_TYPES

URL_MAX = 2048
Url = Annotated[
    str, Field(min_length=8, max_length=URL_MAX, examples=["https://shop.example/hooks"])
]
Description = Annotated[str, Field(max_length=500)]
EventTypes = Annotated[
    list[str],
    Field(
        min_length=1,
        max_length=len(WEBHOOK_EVENT_TYPES),
        description="Event types to receive (GET /v1/webhooks/event-types; /asyncapi)",
        examples=[["loyalty.tier.changed.v1", "loyalty.complaint.sla_breached.v1"]],
    ),
]


def _known_types(value: list[str]) -> list[str]:
    unknown = [t for t in value if t not in WEBHOOK_EVENT_TYPES]
    if unknown:
        raise ValueError(f"not a subscribable event type: {', '.join(unknown[:5])}")
    if len(set(value)) != len(value):
        raise ValueError("an event type is listed twice")
    return value


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
    event_types: EventTypes
    description: Description | None = None

    _types = field_validator("event_types")(_known_types)


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _known_types(value)


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=500)] | None = None


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_seconds: Annotated[float, Field(ge=0, le=30 * 86400)] | None = Field(
        default=None,
        description="How long the old secret signs too (default WEBHOOKS_ROTATION_OVERLAP_"
        "SECONDS, 24 h); 0: at once only the new one",
    )


class SubscriptionOut(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    status: str = Field(description="active, or paused (paused_reason says why)")
    paused_reason: str | None
    paused_at: datetime | None
    secret_key_id: str = Field(description="The key id of the secret signing now (k1, k2, ...)")
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the previous secret signs as well (a rotation's overlap)"
    )
    failed_deliveries_in_row: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="Shown this once: keep it where the receiver can read it")


class SubscriptionPage(BaseModel):
    items: list[SubscriptionOut]


class SecretOut(BaseModel):
    id: str
    secret: str = Field(description="The new secret, shown this once")
    secret_key_id: str
    previous_key_id: str | None
    previous_secret_expires_at: datetime | None


class EventTypesOut(BaseModel):
    event_types: list[str]
