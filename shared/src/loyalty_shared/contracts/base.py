"""What every event payload model is: the ``data`` of one event type, in one version.

A payload model names its event type, the service that publishes it (``SOURCE``) and the
topic it travels on (``TOPIC``); it builds the CloudEvent a producer writes to its outbox
(``event``) and parses what a consumer reads (``of``). Unknown fields are ignored (a
producer may add fields to a version); a missing or malformed field raises
``InvalidPayload``, which the shared consumer dead-letters at once with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)

from loyalty_shared.events import CloudEvent, make_event

# Times travel as RFC 3339 with their offset, as ``datetime.isoformat()`` writes them.
Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
# Money travels as a decimal string ("128.50"), never a float.
Money = Annotated[
    Decimal,
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$", "format": "decimal"}),
]


class InvalidPayload(ValueError):
    """An event whose ``data`` its type's model cannot read: poison, never retried."""


def describe_errors(exc: ValidationError) -> str:
    """``to_tier: Field required; points: Input should be a valid integer``."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "data"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


class EventPayload(BaseModel):
    """The ``data`` of one event type (``TYPE``, ``loyalty.<aggregate>.<event>.v<N>``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    TYPE: ClassVar[str]
    SOURCE: ClassVar[str]
    TOPIC: ClassVar[str]
    # One complete example, as a producer writes it (the AsyncAPI document shows it;
    # tests check that it is what the model dumps).
    EXAMPLE: ClassVar[dict[str, Any]]

    def event(
        self, subject: str, *, time: datetime | None = None, event_id: str | None = None
    ) -> CloudEvent:
        """The envelope a producer publishes: this payload as ``data``, keyed by ``subject``."""
        return make_event(
            self.SOURCE,
            self.TYPE,
            subject,
            self.model_dump(mode="json"),
            time=time,
            event_id=event_id,
        )

    @classmethod
    def of(cls, event: CloudEvent) -> Self:
        """The payload of ``event`` read with this model; ``InvalidPayload`` says why not."""
        if event.type != cls.TYPE:
            raise InvalidPayload(f"{cls.__name__} reads {cls.TYPE}, not {event.type}")
        try:
            return cls.model_validate(event.data)
        except ValidationError as exc:
            raise InvalidPayload(
                f"{event.type} payload does not match {cls.__name__}: {describe_errors(exc)}"
            ) from exc

    @classmethod
    def written(cls, data: Mapping[str, Any]) -> Self:
        """A producer's payload given as a dict, checked against the model: a field the model
        lacks is refused (add it to the contract first), a missing one too."""
        extra = sorted(set(data) - set(cls.model_fields))
        if extra:
            raise ValueError(f"{cls.TYPE}: {extra} not in {cls.__name__}; add them to it first")
        return cls.model_validate(data)

    @classmethod
    def sample(cls, **changes: Any) -> Self:
        """``EXAMPLE`` with ``changes``, validated: what tests send instead of hand-made dicts,
        so that no test feeds a consumer a shape no producer makes."""
        return cls.model_validate({**cls.EXAMPLE, **changes})

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)
