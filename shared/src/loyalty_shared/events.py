"""The CloudEvents 1.0 envelope every service publishes and consumes (structured JSON mode)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from loyalty_shared.ids import uuid7

_TYPE_PATTERN = re.compile(r"^loyalty\.[a-z_]+(\.[a-z_]+)+\.v[0-9]+$")


class CloudEvent(BaseModel):
    """id, source, type (``loyalty.<aggregate>.<event>.v<N>``), time, subject (member id), data."""

    model_config = ConfigDict(frozen=True)

    specversion: str = "1.0"
    id: str = Field(default_factory=uuid7)
    source: str
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _versioned_type(cls, value: str) -> str:
        if not _TYPE_PATTERN.match(value):
            raise ValueError(
                f"event type {value!r} must look like loyalty.<aggregate>.<event>.v<N>"
            )
        return value

    @field_validator("time")
    @classmethod
    def _aware_time(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("event time must carry a UTC offset")
        return value

    def to_json_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> CloudEvent:
        return cls.model_validate(orjson.loads(raw))

    @property
    def key(self) -> str:
        """Partition key: the member id, so one member's events stay in order."""
        return self.subject or self.id


def make_event(
    source: str,
    type_: str,
    subject: str | None,
    data: dict[str, Any],
    *,
    time: datetime | None = None,
    event_id: str | None = None,
) -> CloudEvent:
    kwargs: dict[str, Any] = {"source": source, "type": type_, "subject": subject, "data": data}
    if time is not None:
        kwargs["time"] = time
    if event_id is not None:
        kwargs["id"] = event_id
    return CloudEvent(**kwargs)
