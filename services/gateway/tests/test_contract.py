"""Contract: schemathesis over the merged OpenAPI, through the gateway, as admin.

Every operation of the gateway's ``/openapi.json`` (the three services' and the gateway's
own) is called with generated requests, valid and invalid, through the gateway in front of
the real services (real Postgres, real broker), with the admin key. Each answer must not be
a server error, its status must be documented, its content type must be the documented one
and its body must match the documented schema.

schemathesis makes one test per operation at collection time, so the merged document is
taken then from a gateway over the services' apps (their OpenAPI needs no database; the
lazy ``schemathesis.pytest.from_fixture`` loader does not run under pytest 9.2, whose nodes
have no ``_nodeid`` any more);
``test_the_contract_is_what_the_running_gateway_serves`` checks it is the document the
running gateway serves. The example count is bounded and derandomized (a fixed seed): CI
runs are quick and repeatable (``CONTRACT_MAX_EXAMPLES`` raises the bound and ``CONTRACT_SEED``
changes the seed, for a deeper local run).

The tests are synchronous (schemathesis and Hypothesis drive them); each generated request
is sent on the session's event loop, where the services' database pools live.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from feedback import testing as feedback_testing
from feedback.main import create_app as feedback_app
from feedback.settings import FeedbackSettings
from gateway.main import create_app as gateway_app
from gateway.testing import TEST_KEYS, bearer, make_gateway_settings
from loyalty_shared.testing import (
    Infra,
    RoutingTransport,
    asgi_client,
    migrated_database,
    running_app,
    settings_overrides,
)
from points import testing as points_testing
from points.main import create_app as points_app
from points.settings import PointsSettings
from segmentation import testing as segmentation_testing
from segmentation.main import create_app as segmentation_app
from segmentation.settings import SegmentationSettings
from webhooks import testing as webhooks_testing
from webhooks.main import create_app as webhooks_app
from webhooks.settings import WebhooksSettings

# Per operation and phase; CONTRACT_MAX_EXAMPLES=100 makes a deeper (minutes-long) local run.
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "8"))
SEED = int(os.environ.get("CONTRACT_SEED", "20261123"))

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


async def _merged_openapi() -> dict[str, Any]:
    services = RoutingTransport(
        {
            "points": points_app(PointsSettings(environment="test")),
            "segmentation": segmentation_app(SegmentationSettings(environment="test")),
            "feedback": feedback_app(FeedbackSettings(environment="test")),
            "webhooks": webhooks_app(WebhooksSettings(environment="test")),
        }
    )
    app = gateway_app(make_gateway_settings(), transport=services)
    async with running_app(app), asgi_client(app) as client:
        response = await client.get("/openapi.json")
    response.raise_for_status()
    doc: dict[str, Any] = response.json()
    return doc


MERGED = asyncio.run(_merged_openapi())
schema = schemathesis.openapi.from_dict(
    MERGED,
    config=SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            # Bounded: the coverage phase enumerates boundary values without a limit.
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        }
    ),
)


class Caller:
    """Sends a schemathesis case through the gateway on the session's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> None:
        self.loop = loop
        self.client = client

    def send(self, case: Case[Any]) -> httpx.Response:
        kwargs = case.as_transport_kwargs(base_url="http://test")
        # Generated credentials (the schemes are bearer) give way to the admin key.
        headers = {
            k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"
        }
        content: bytes | None = None
        if "json" in kwargs:
            content = json.dumps(kwargs["json"]).encode()
            headers.setdefault("Content-Type", "application/json")
        elif kwargs.get("data") is not None:
            data = kwargs["data"]
            content = data.encode() if isinstance(data, str) else data
        headers.update(bearer(TEST_KEYS["admin"]))
        request = self.client.build_request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params"),
            headers=headers,
            content=content,
        )
        return self.loop.run_until_complete(self.client.send(request))


@pytest.fixture(scope="module")
async def contract_client(infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway over the three services on databases of their own.

    The generated calls change what the whole platform does (admin may replace the tier
    ladder, earning rules, campaigns, the contact cap, SLA policies...): on the suite's
    shared databases they would change what later tests see.
    """

    async def settings_for(name: str, service_dir: Path) -> dict[str, Any]:
        url = await migrated_database(infra, f"contract_{name}", service_dir)
        return settings_overrides(infra, url)

    points = PointsSettings(**await settings_for("points", points_testing.SERVICE_DIR))
    segmentation = SegmentationSettings(
        **await settings_for("segmentation", segmentation_testing.SERVICE_DIR)
    )
    feedback = FeedbackSettings(**await settings_for("feedback", feedback_testing.SERVICE_DIR))
    webhooks = WebhooksSettings(**await settings_for("webhooks", webhooks_testing.SERVICE_DIR))
    async with AsyncExitStack() as stack:
        apps: dict[str, FastAPI] = {
            "points": await stack.enter_async_context(running_app(points_app(points))),
            "segmentation": await stack.enter_async_context(
                running_app(segmentation_app(segmentation))
            ),
            "feedback": await stack.enter_async_context(running_app(feedback_app(feedback))),
            "webhooks": await stack.enter_async_context(running_app(webhooks_app(webhooks))),
        }
        gateway = gateway_app(make_gateway_settings(), transport=RoutingTransport(apps))
        await stack.enter_async_context(running_app(gateway))
        yield await stack.enter_async_context(asgi_client(gateway))


@pytest.fixture(scope="module")
async def caller(contract_client: httpx.AsyncClient) -> Caller:
    return Caller(asyncio.get_running_loop(), contract_client)


async def test_the_contract_is_what_the_running_gateway_serves(
    contract_client: httpx.AsyncClient,
) -> None:
    response = await contract_client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == MERGED


class Walk:
    """Calls through the gateway as admin, each answer checked against the merged OpenAPI."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.seen: list[str] = []

    async def call(
        self, method: str, template: str, *, expect: int, json_body: Any = None, **ids: str
    ) -> Any:
        path = template.format(**ids)
        headers = bearer(TEST_KEYS["admin"])
        if method in ("POST", "PUT"):
            headers["Idempotency-Key"] = uuid.uuid4().hex
        response = await self.client.request(method, path, json=json_body, headers=headers)
        assert response.status_code == expect, (method, path, response.text)
        documented = MERGED["paths"][template][method.lower()]["responses"][str(expect)]
        if response.content:
            media_type = response.headers["content-type"].split(";")[0]
            assert media_type in documented.get("content", {}), (method, template, media_type)
        schema[template][method].validate_response(response)  # the body matches its schema
        self.seen.append(f"{method} {template}")
        return response.json() if response.content else None


async def test_the_main_journeys_answer_as_documented(
    contract_client: httpx.AsyncClient,
) -> None:
    """Generated requests rarely name things that exist: these calls do, so the documented
    success answers (2xx bodies) of the member, order and complaint journeys are checked."""
    walk = Walk(contract_client)
    member = f"m-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC).isoformat()
    await walk.call("POST", "/v1/members", expect=201, json_body={"member_id": member})
    await walk.call("GET", "/v1/members/{member_id}", expect=200, member_id=member)
    order = f"o-{uuid.uuid4().hex[:10]}"
    await walk.call(
        "POST",
        "/v1/orders",
        expect=201,
        json_body={"order_id": order, "member_id": member, "amount": "120.00", "occurred_at": now},
    )
    await walk.call(
        "POST",
        "/v1/orders/{order_id}/refunds",
        expect=201,
        json_body={"refund_id": f"r-{uuid.uuid4().hex[:8]}", "amount": "20.00"},
        order_id=order,
    )
    await walk.call(
        "POST",
        "/v1/members/{member_id}/adjustments",
        expect=201,
        json_body={"points": 500, "reason": "goodwill"},
        member_id=member,
    )
    redemption = await walk.call(
        "POST",
        "/v1/members/{member_id}/redemptions",
        expect=201,
        json_body={"points": 100},
        member_id=member,
    )
    await walk.call(
        "POST",
        "/v1/redemptions/{redemption_id}/cancel",
        expect=200,
        redemption_id=redemption["redemption_id"],
    )
    await walk.call("POST", "/v1/members/{member_id}/check-ins", expect=201, member_id=member)
    await walk.call("GET", "/v1/members/{member_id}/ledger", expect=200, member_id=member)
    await walk.call("GET", "/v1/members/{member_id}/export", expect=200, member_id=member)
    await walk.call("GET", "/v1/tiers", expect=200)

    complaint = await walk.call(
        "POST",
        "/v1/complaints",
        expect=201,
        json_body={
            "member_id": member,
            "channel": "app",
            "category": "delivery",
            "description": "The parcel never came",
        },
    )
    await walk.call(
        "GET", "/v1/complaints/{complaint_id}", expect=200, complaint_id=complaint["id"]
    )
    for action in ("acknowledge", "start", "resolve"):
        await walk.call(
            "POST",
            "/v1/complaints/{complaint_id}/actions",
            expect=200,
            json_body={"action": action},
            complaint_id=complaint["id"],
        )
    follow_ups = await walk.call("GET", "/v1/follow-ups", expect=200)
    ours = [f for f in follow_ups["items"] if f.get("member_id") == member]
    assert ours, follow_ups
    await walk.call("GET", "/v1/follow-ups/{follow_up_id}", expect=200, follow_up_id=ours[0]["id"])
    await walk.call("GET", "/v1/feedback/members/{member_id}", expect=200, member_id=member)
    await walk.call("GET", "/v1/feedback/members/{member_id}/export", expect=200, member_id=member)

    survey = await walk.call(
        "POST",
        "/v1/surveys",
        expect=201,
        json_body={
            "name": "After purchase",
            "questions": [
                {"id": "nps", "type": "nps", "text": "Would you recommend us?", "required": True},
                {"id": "csat", "type": "rating", "text": "How satisfied are you?"},
            ],
        },
    )
    await walk.call("GET", "/v1/surveys/{survey_id}", expect=200, survey_id=survey["id"])
    await walk.call(
        "POST",
        "/v1/surveys/{survey_id}/responses",
        expect=201,
        json_body={"member_id": member, "answers": {"nps": 9, "csat": 4}},
        survey_id=survey["id"],
    )
    await walk.call("GET", "/v1/feedback/metrics", expect=200)

    tag = f"t-{uuid.uuid4().hex[:8]}"
    await walk.call("POST", "/v1/tags", expect=201, json_body={"name": tag, "kind": "manual"})
    await walk.call("GET", "/v1/tags", expect=200)
    segment = await walk.call(
        "POST",
        "/v1/segments",
        expect=201,
        json_body={"name": f"buyers-{uuid.uuid4().hex[:6]}", "condition": "order_count >= 1"},
    )
    await walk.call(
        "GET", "/v1/segments/{segment_id}", expect=200, segment_id=segment["segment_id"]
    )
    await walk.call(
        "GET", "/v1/segments/{segment_id}/members", expect=200, segment_id=segment["segment_id"]
    )
    await walk.call(
        "PUT", "/v1/contact-policy", expect=200, json_body={"cap": 1000, "period_days": 1}
    )
    await walk.call(
        "POST",
        "/v1/contacts",
        expect=201,
        json_body={"member_id": member, "channel": "email"},
    )

    status = await walk.call("GET", "/v1/members/{member_id}/status", expect=200, member_id=member)
    assert status["open_complaints"] == 0  # resolved
    await walk.call("POST", "/v1/auth/member-tokens", expect=201, json_body={"member_id": member})
    assert len(walk.seen) == 33


async def test_integers_beyond_64_bits_are_refused_not_a_server_error(
    contract_client: httpx.AsyncClient,
) -> None:
    """Found by the contract run: such an integer in interaction attributes was a 500."""
    admin = bearer(TEST_KEYS["admin"])
    member = f"m-{uuid.uuid4().hex[:10]}"
    enrol = await contract_client.post("/v1/members", json={"member_id": member}, headers=admin)
    assert enrol.status_code == 201
    body = {
        "event_id": f"ev-{uuid.uuid4().hex[:10]}",
        "member_id": member,
        "type": "review",
        "occurred_at": datetime.now(UTC).isoformat(),
        "attributes": {"sku": "a-1", "nested": [{"n": 2**64}]},
    }
    r = await contract_client.post("/v1/interactions", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "body.attributes"
    body["attributes"] = {"sku": "a-1", "n": 2**63 - 1}
    r = await contract_client.post("/v1/interactions", json=body, headers=admin)
    assert r.status_code == 202, r.text


def _requires_idempotency_key(operation: dict[str, Any]) -> bool:
    return any(
        p.get("in") == "header" and p["name"].lower() == "idempotency-key" and p.get("required")
        for p in operation.get("parameters", [])
    )


async def test_idempotency_key_is_required_exactly_where_its_absence_is_a_428(
    contract_client: httpx.AsyncClient,
) -> None:
    """Every write of the merged document is sent without an ``Idempotency-Key`` (an empty
    JSON object, made-up ids in the path, the admin key): the operations that answer 428
    Precondition Required are exactly those whose document marks the header required."""
    admin = bearer(TEST_KEYS["admin"])
    answered_428: set[str] = set()
    marked: set[str] = set()
    for path, item in MERGED["paths"].items():
        for method, operation in item.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            concrete = re.sub(r"\{[^}]+\}", lambda _: f"x-{uuid.uuid4().hex[:8]}", path)
            r = await contract_client.request(method.upper(), concrete, json={}, headers=admin)
            assert r.status_code < 500, (method, path, r.text)
            if r.status_code == 428:
                answered_428.add(f"{method.upper()} {path}")
            if _requires_idempotency_key(operation):
                marked.add(f"{method.upper()} {path}")
    # API.md: a redemption takes an Idempotency-Key (a retry must not spend twice)
    assert "POST /v1/members/{member_id}/redemptions" in answered_428
    assert marked == answered_428


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_its_contract(case: Case[Any], caller: Caller) -> None:
    response = caller.send(case)
    case.validate_response(response, checks=CHECKS)
