"""GET /asyncapi.json and GET /asyncapi: the AsyncAPI 3.0 contract of every topic and event
type, generated from the payload models, served to anyone (no key), rendered offline."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from loyalty_shared.contracts import CONTRACTS
from loyalty_shared.testing import asgi_client
from loyalty_shared.topics import ALL_EVENT_TOPICS


@pytest.fixture
async def anonymous(gateway_app: FastAPI) -> Any:
    async with asgi_client(gateway_app) as client:
        yield client


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_the_document_has_every_topic_and_event_type_with_schema_and_example(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get("/asyncapi.json")
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["asyncapi"] == "3.0.0"
    assert {c["address"] for c in doc["channels"].values()} == set(ALL_EVENT_TOPICS)
    for ref in _refs(doc):  # every reference points at something
        assert _resolve(doc, ref) is not None
    messages = {m["name"]: m for m in doc["components"]["messages"].values()}
    assert set(messages) == set(CONTRACTS)
    for type_, model in CONTRACTS.items():
        message = messages[type_]
        channel = next(c for c in doc["channels"].values() if c["address"] == model.TOPIC)
        assert model.__name__ in channel["messages"]
        data_schema = _resolve(doc, message["payload"]["properties"]["data"]["$ref"])
        assert set(data_schema["properties"]) == set(model.model_fields)
        assert set(data_schema["required"]) == {
            n for n, f in model.model_fields.items() if f.is_required()
        }
        example = message["examples"][0]["payload"]
        assert example["type"] == type_ and example["source"] == model.SOURCE
        assert model.model_validate(example["data"]).model_dump(mode="json") == example["data"]
    sends = {op["channel"]["$ref"] for op in doc["operations"].values() if op["action"] == "send"}
    assert len(sends) == len(ALL_EVENT_TOPICS)


async def test_the_rendered_page_shows_every_type_offline_and_docs_link_to_it(
    anonymous: httpx.AsyncClient, gateway_client: httpx.AsyncClient
) -> None:
    page = await anonymous.get("/asyncapi")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script" not in html and "http://" not in html and "https://" not in html
    for type_, model in CONTRACTS.items():
        assert f'id="{type_}"' in html
        for field in model.model_fields:
            assert f"<code>{field}</code>" in html, (type_, field)
    assert "style-src 'self' 'unsafe-inline'" in page.headers["content-security-policy"]
    merged = (await gateway_client.get("/openapi.json")).json()
    assert "(/asyncapi)" in merged["info"]["description"]


async def test_the_document_lists_what_a_webhook_may_subscribe_to(
    anonymous: httpx.AsyncClient, gateway_client: httpx.AsyncClient
) -> None:
    doc = (await anonymous.get("/asyncapi.json")).json()
    hooks = doc["x-webhooks"]
    offered = (await gateway_client.get("/v1/webhooks/event-types")).json()["event_types"]
    assert hooks["eventTypes"] == offered == sorted(CONTRACTS)
    assert "Loyalty-Webhook-Signature" in hooks["headers"]
    for message in doc["components"]["messages"].values():
        assert message["x-webhook-subscribable"] is True
    page = (await anonymous.get("/asyncapi")).text
    assert '<h2 id="webhooks">Webhooks</h2>' in page
    assert all(f"<code>{t}</code>" in page for t in offered)
