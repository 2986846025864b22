"""The AsyncAPI 3.0 document of every topic and event type, generated from the contract models.

One channel per topic (``loyalty_shared.topics``), one message per event type: the
structured CloudEvents envelope with ``data`` the payload model's JSON Schema (as it is
written, ``mode="serialization"``), the record headers, the Kafka key, and the model's
example. Each publisher has a ``send`` operation with its messages; each consumer group a
``receive`` operation on the topics it reads (``topics.CONSUMED_BY``). The gateway serves it
at ``GET /asyncapi.json`` and renders it at ``GET /asyncapi``.
"""

from __future__ import annotations

import inspect
from typing import Any

from loyalty_shared.contracts import PUBLISHERS, WEBHOOK_EVENT_TYPES
from loyalty_shared.contracts.base import EventPayload
from loyalty_shared.topics import CONSUMED_BY, dlq_topic

_SCHEMAS = "#/components/schemas/"


def _channel_id(topic: str) -> str:
    return "".join(p.capitalize() if i else p for i, p in enumerate(topic.split(".")[1:]))


def _summary(model: type[EventPayload]) -> str:
    return " ".join((inspect.getdoc(model) or model.TYPE).split())


def _envelope(model: type[EventPayload]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "subject", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "description": "unique; consumers are idempotent on it"},
            "source": {"const": model.SOURCE},
            "type": {"const": model.TYPE},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string", "description": "the member id (the Kafka key)"},
            "datacontenttype": {"const": "application/json"},
            "data": {"$ref": f"{_SCHEMAS}{model.__name__}"},
        },
    }


def _message(model: type[EventPayload]) -> dict[str, Any]:
    example_data = model.model_validate(model.EXAMPLE).model_dump(mode="json")
    subject = str(example_data.get("member_id", "m-1001"))
    return {
        "name": model.TYPE,
        "title": model.__name__,
        "summary": _summary(model),
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "required": ["ce_type"],
            "properties": {
                "ce_type": {"const": model.TYPE},
                "x-request-id": {"type": "string", "description": "the HTTP request behind it"},
            },
        },
        "payload": _envelope(model),
        "bindings": {"kafka": {"key": {"type": "string", "description": "the member id"}}},
        "x-webhook-subscribable": model.TYPE in WEBHOOK_EVENT_TYPES,
        "examples": [
            {
                "name": "example",
                "headers": {"ce_type": model.TYPE, "x-request-id": "req-7f3a"},
                "payload": {
                    "specversion": "1.0",
                    "id": "0193a1c2-7d7c-7a8e-9f5b-0f1c2b8f6d11",
                    "source": model.SOURCE,
                    "type": model.TYPE,
                    "time": "2026-11-23T10:15:02.113000+00:00",
                    "subject": subject,
                    "datacontenttype": "application/json",
                    "data": example_data,
                },
            }
        ],
    }


def _webhooks() -> dict[str, Any]:
    """The same events over HTTP: what a webhook subscription may ask for, and how it comes."""
    return {
        "description": "Shops without a Kafka consumer subscribe an https URL to any of "
        "eventTypes (POST /v1/webhooks, admin). Each event is POSTed as the same CloudEvents "
        "envelope (Content-Type application/cloudevents+json), signed with HMAC-SHA256 over "
        "'<timestamp>.<body>', retried with backoff for about 24 h; deduplicate by "
        "Loyalty-Webhook-Id. docs/webhooks.md has the verification code.",
        "subscribe": "POST /v1/webhooks",
        "eventTypes": list(WEBHOOK_EVENT_TYPES),
        "headers": {
            "Loyalty-Webhook-Id": "the event id (deduplicate on it)",
            "Loyalty-Webhook-Type": "the event type",
            "Loyalty-Webhook-Timestamp": "Unix seconds, signed",
            "Loyalty-Webhook-Signature": "<key id>=<hex HMAC-SHA256(secret, timestamp.body)>, "
            "comma-separated: two during a secret rotation's overlap",
            "Loyalty-Webhook-Delivery": "the delivery's id in the log",
            "Loyalty-Webhook-Attempt": "1 for the first attempt",
        },
    }


def asyncapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for service, models in PUBLISHERS.items():
        for model in models:
            schema = model.model_json_schema(
                mode="serialization", ref_template=_SCHEMAS + "{model}"
            )
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            messages[model.__name__] = _message(model)
            channel = channels.setdefault(
                _channel_id(model.TOPIC),
                {
                    "address": model.TOPIC,
                    "title": model.TOPIC,
                    "description": f"Everything the {service} service publishes, keyed by "
                    f"member id (one member's events keep their order). Dead letters of its "
                    f"consumers go to {dlq_topic(model.TOPIC)}.",
                    "messages": {},
                },
            )
            channel["messages"][model.__name__] = {
                "$ref": f"#/components/messages/{model.__name__}"
            }
        topic = models[0].TOPIC
        operations[f"{service}Publishes"] = {
            "action": "send",
            "title": f"{service} publishes (transactional outbox, then its relay)",
            "channel": {"$ref": f"#/channels/{_channel_id(topic)}"},
            "messages": [
                {"$ref": f"#/channels/{_channel_id(topic)}/messages/{m.__name__}"} for m in models
            ],
        }
    for group, topics in CONSUMED_BY.items():
        for topic in topics:
            operations[f"{group}Reads{_channel_id(topic)[0].upper()}{_channel_id(topic)[1:]}"] = {
                "action": "receive",
                "title": f"consumer group {group} (idempotent inbox, dead letters to "
                f"{dlq_topic(topic)})",
                "channel": {"$ref": f"#/channels/{_channel_id(topic)}"},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Loyalty platform events",
            "version": "1.0.0",
            "description": "Every event the services publish on Kafka, generated from the "
            "typed payload models (loyalty_shared.contracts). Each record is a CloudEvents 1.0 "
            "envelope in structured JSON mode; data is the payload below. Types end in .v<N>: "
            "a breaking change is a new type. Consumers ignore fields they do not know.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "the dev stack's broker (LOYALTY_KAFKA_BOOTSTRAP elsewhere)",
            }
        },
        "channels": channels,
        "operations": operations,
        "x-webhooks": _webhooks(),
        "components": {"messages": messages, "schemas": schemas},
    }
