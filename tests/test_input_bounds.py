"""Every field a caller sends to points or feedback is bounded (docs/security.md, "Sizes"):
each string has a maximum length, each list a maximum number of items, each map a maximum
number of keys, as the request schemas (OpenAPI) declare them; the few free-form objects
are bounded otherwise, and say how. A field added without a bound fails here."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from feedback.main import create_app as feedback_app
from feedback.settings import FeedbackSettings
from points.main import create_app as points_app
from points.settings import PointsSettings

# Free-form on purpose, each bounded some other way (and tested there).
FREE_FORM = {
    # at most POINTS_INTERACTION_ATTRIBUTES_MAX_BYTES (16 KB) as JSON, 32 levels deep:
    # services/points/tests/test_member_caps.py
    "InteractionIn.attributes",
    # each row is validated as an OrderIn (bounded), up to 1000 rows
    "OrderBatchIn.orders[]",
    # each row is validated as a RefundRowIn (bounded), up to 1000 rows
    "OrderBatchIn.refunds[]",
    # at most 100 answers keyed by question ids of at most 64 characters, each answer
    # checked against its question (free text at most 5000 characters, choices from the
    # survey's options): services/feedback/tests/test_member_edges.py
    "ResponseIn.answers",
}


def _apps() -> Iterator[tuple[str, FastAPI]]:
    url = "postgresql+asyncpg://nobody@localhost/none"
    yield "points", points_app(PointsSettings(database_url=url, environment="test"))
    yield "feedback", feedback_app(FeedbackSettings(database_url=url, environment="test"))


def _is_decimal(alternatives: list[dict[str, Any]]) -> bool:
    """pydantic's Decimal: a number or its string, bounded by max_digits when parsed."""
    return {"number", "string"} <= {a.get("type") for a in alternatives}


class Audit:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.components = spec["components"]["schemas"]
        self.seen: set[str] = set()
        self.unbounded: list[str] = []

    def walk(self, schema: dict[str, Any], where: str) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in self.seen:
                self.seen.add(name)
                self.walk(self.components[name], name)
            return
        for key in ("anyOf", "oneOf", "allOf"):
            alternatives = schema.get(key, [])
            for sub in alternatives:
                if not (_is_decimal(alternatives) and sub.get("type") == "string"):
                    self.walk(sub, where)
        kind = schema.get("type")
        bounded = {"maxLength", "enum", "const"} & set(schema) or schema.get("format") in (
            "date-time",
            "date",
            "email",
        )
        if kind == "string" and not bounded:
            self.unbounded.append(f"{where}: string without maxLength")
        if kind == "array":
            if "maxItems" not in schema:
                self.unbounded.append(f"{where}: array without maxItems")
            if "items" in schema:
                self.walk(schema["items"], f"{where}[]")
        if kind == "object" or "properties" in schema:
            self._object(schema, where)

    def _object(self, schema: dict[str, Any], where: str) -> None:
        for name, sub in schema.get("properties", {}).items():
            self.walk(sub, f"{where}.{name}")
        extra = schema.get("additionalProperties", "properties" not in schema)
        if extra is True and where not in FREE_FORM:
            self.unbounded.append(f"{where}: free-form object")
        if isinstance(extra, dict):
            if "maxProperties" not in schema:
                self.unbounded.append(f"{where}: map without maxProperties")
            if "propertyNames" in schema:
                self.walk(schema["propertyNames"], f"{where}{{key}}")
            elif "maxProperties" in schema:
                self.unbounded.append(f"{where}: map keys without maxLength")
            self.walk(extra, f"{where}{{}}")


def _request_bodies(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody")
            for media in (body or {}).get("content", {}).values():
                yield f"{method.upper()} {path}", media["schema"]


@pytest.mark.parametrize(("service", "app"), list(_apps()), ids=lambda v: str(v)[:8])
def test_every_request_field_is_bounded(service: str, app: FastAPI) -> None:
    spec = app.openapi()
    audit = Audit(spec)
    bodies = list(_request_bodies(spec))
    assert bodies, service
    for operation, schema in bodies:
        audit.walk(schema, operation)
    assert audit.unbounded == []
