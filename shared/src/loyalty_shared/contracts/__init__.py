"""The event contracts between the services: one versioned payload model per event type.

Why here and not in each service: STYLE.md wants the payload model in the service that
publishes it and consumers parsing with that model, and no service may import another.
So each publishing service's models live in one module of this shared package
(``contracts.points``, ``contracts.segmentation``, ``contracts.feedback``): the publisher
builds its outbox rows from them, every consumer parses ``event.data`` with the same
class, and the AsyncAPI document (``contracts.asyncapi``) is generated from them. A new
event type is a new model in its publisher's module, listed in that module's
``PUBLISHED``; a breaking change is a new model with the next ``.v<N>``.
"""

from __future__ import annotations

from loyalty_shared.contracts import feedback, points, segmentation
from loyalty_shared.contracts.base import (
    EventPayload,
    InvalidPayload,
    Money,
    Timestamp,
)

# publishing service -> the payload models it publishes
PUBLISHERS: dict[str, tuple[type[EventPayload], ...]] = {
    "points": points.PUBLISHED,
    "segmentation": segmentation.PUBLISHED,
    "feedback": feedback.PUBLISHED,
}

# event type -> its payload model (every type any service publishes)
CONTRACTS: dict[str, type[EventPayload]] = {
    model.TYPE: model for models in PUBLISHERS.values() for model in models
}


# what a shop may subscribe its webhook to (docs/webhooks.md): every published type
WEBHOOK_EVENT_TYPES: tuple[str, ...] = tuple(sorted(CONTRACTS))


def publisher_of(event_type: str) -> str | None:
    for service, models in PUBLISHERS.items():
        if any(event_type == m.TYPE for m in models):
            return service
    return None


__all__ = [
    "CONTRACTS",
    "PUBLISHERS",
    "WEBHOOK_EVENT_TYPES",
    "EventPayload",
    "InvalidPayload",
    "Money",
    "Timestamp",
    "publisher_of",
]
