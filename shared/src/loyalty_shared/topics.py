"""Kafka topic names: the contract between services (documented in docs/events.md).

One topic per publishing service keeps each member's events from one service
in order (the key is the member id). Dead letters go to ``<topic>.dlq``.
"""

from __future__ import annotations

POINTS_EVENTS = "loyalty.points.events"
SEGMENTATION_EVENTS = "loyalty.segmentation.events"
FEEDBACK_EVENTS = "loyalty.feedback.events"

ALL_EVENT_TOPICS = (POINTS_EVENTS, SEGMENTATION_EVENTS, FEEDBACK_EVENTS)

# Which topics each service's consumer group (named after the service) reads.
CONSUMED_BY: dict[str, tuple[str, ...]] = {
    "points": (FEEDBACK_EVENTS,),
    "segmentation": (POINTS_EVENTS, FEEDBACK_EVENTS),
    "feedback": (POINTS_EVENTS, SEGMENTATION_EVENTS),
    # every event a shop may subscribe to, POSTed to its endpoint (docs/webhooks.md)
    "webhooks": ALL_EVENT_TOPICS,
}


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics() -> list[str]:
    return [*ALL_EVENT_TOPICS, *(dlq_topic(t) for t in ALL_EVENT_TOPICS)]
