"""The subscriptions API: made, read, changed, paused, deleted; bad input is a 4xx problem
naming the field; SSRF targets refused (outside dev, and some everywhere); the gateway's
policy (admin makes them, ops runs them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.testing import TEST_KEYS, bearer
from loyalty_shared.contracts.points import TierChangedV1
from loyalty_shared.gateway_trust import TOKEN_HEADER
from loyalty_shared.testing import running_app
from webhooks.main import create_app
from webhooks.settings import WebhooksSettings

TIER = TierChangedV1.TYPE
PUBLIC = "https://93.184.216.34/hooks"  # a public address: no DNS needed
LONG_SECRET = "g" * 40


def problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


async def test_a_subscription_from_making_to_deleting(webhooks_client: httpx.AsyncClient) -> None:
    made = await webhooks_client.post(
        "/v1/webhooks",
        json={"url": PUBLIC, "event_types": [TIER], "description": "tiers to the CRM"},
        headers={"X-Operator-Id": "alice"},
    )
    assert made.status_code == 201, made.text
    sub = made.json()
    assert sub["secret"].startswith("whsec_") and len(sub["secret"]) > 40
    assert sub["secret_key_id"] == "k1" and sub["status"] == "active"
    path = f"/v1/webhooks/{sub['id']}"

    read = (await webhooks_client.get(path)).json()
    assert "secret" not in read and read["event_types"] == [TIER]
    listed = (await webhooks_client.get("/v1/webhooks")).json()["items"]
    assert sub["id"] in [s["id"] for s in listed]
    assert all("secret" not in s for s in listed)

    changed = await webhooks_client.patch(
        path, json={"event_types": [TIER, "loyalty.points.expired.v1"], "description": None}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == [TIER, "loyalty.points.expired.v1"]
    assert changed.json()["description"] is None and changed.json()["url"] == PUBLIC

    paused = (await webhooks_client.post(f"{path}/pause", json={"reason": "CRM migration"})).json()
    assert (paused["status"], paused["paused_reason"]) == ("paused", "CRM migration")
    resumed = (await webhooks_client.post(f"{path}/resume")).json()
    assert (resumed["status"], resumed["paused_reason"]) == ("active", None)

    assert (await webhooks_client.delete(path)).status_code == 204
    problem(await webhooks_client.get(path), 404)
    problem(await webhooks_client.get(f"{path}/deliveries"), 404)
    problem(await webhooks_client.post(f"{path}/test"), 404)


async def test_bad_input_is_a_problem_naming_the_field(
    webhooks_client: httpx.AsyncClient,
) -> None:
    post = webhooks_client.post
    problem(await post("/v1/webhooks", json={"url": PUBLIC, "event_types": ["x"]}), 422,
            "body.event_types")  # fmt: skip
    problem(await post("/v1/webhooks", json={"url": PUBLIC, "event_types": []}), 422,
            "body.event_types")  # fmt: skip
    problem(await post("/v1/webhooks", json={"url": PUBLIC, "event_types": [TIER, TIER]}), 422,
            "body.event_types")  # fmt: skip
    problem(await post("/v1/webhooks", json={"event_types": [TIER]}), 422, "body.url")
    for url in ("ftp://shop.example/x", "https://user:pw@shop.example/x", "not a url at all"):
        body = problem(await post("/v1/webhooks", json={"url": url, "event_types": [TIER]}), 422,
                       "body.url")  # fmt: skip
        assert body["type"].endswith("/webhook-target-refused")
    problem(await post("/v1/webhooks", json={"url": PUBLIC, "event_types": [TIER], "x": 1}), 422)
    sub = (await post("/v1/webhooks", json={"url": PUBLIC, "event_types": [TIER]})).json()
    problem(await webhooks_client.get(f"/v1/webhooks/{sub['id']}/deliveries",
                                      params={"cursor": "abc"}), 422, "query.cursor")  # fmt: skip
    problem(await webhooks_client.get(f"/v1/webhooks/{sub['id']}/deliveries/99999999999999999999"),
            422)  # fmt: skip
    problem(await webhooks_client.post(f"/v1/webhooks/{sub['id']}/rotate-secret",
                                       json={"overlap_seconds": -1}), 422,
            "body.overlap_seconds")  # fmt: skip
    problem(await webhooks_client.get(f"/v1/webhooks/{sub['id']}/deliveries/1"), 404)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://[fe80::1]/hooks",
        "http://[::ffff:169.254.169.254]/hooks",  # the same, as IPv4-mapped IPv6
        "http://[fd00:ec2::254]/hooks",  # AWS's IPv6 metadata address
        "http://0.0.0.0/hooks",
    ],
)
async def test_link_local_targets_are_refused_even_in_dev(
    webhooks_client: httpx.AsyncClient, url: str
) -> None:
    response = await webhooks_client.post("/v1/webhooks", json={"url": url, "event_types": [TIER]})
    problem(response, 422, "body.url")


@pytest.fixture(scope="module")
async def production(webhooks_db: str, infra: Any) -> AsyncIterator[dict[str, FastAPI]]:
    """The webhooks API as it runs outside dev (plain, and allowing private receivers)."""
    values = {
        "environment": "production",
        "database_url": webhooks_db,
        "kafka_bootstrap": infra.kafka_bootstrap,
        "gateway_secret": LONG_SECRET,
        "erasure_hmac_secret": "e" * 40,
    }
    async with (
        running_app(create_app(WebhooksSettings(**values))) as strict,
        running_app(create_app(WebhooksSettings(**values, allow_private_targets=True))) as lax,
    ):
        yield {"strict": strict, "lax": lax}


async def _create(app: FastAPI, url: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={TOKEN_HEADER: LONG_SECRET},
    ) as client:
        return await client.post("/v1/webhooks", json={"url": url, "event_types": [TIER]})


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/hooks",  # https only
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://127.1/hooks",  # a name that resolves to loopback
        "https://0x7f000001/hooks",
        "https://[::1]/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://172.16.5.4/hooks",
        "https://100.64.0.1/hooks",  # carrier-grade NAT
        "https://[fc00::1]/hooks",
        "https://169.254.169.254/hooks",
    ],
)
async def test_ssrf_targets_are_refused_outside_dev(
    production: dict[str, FastAPI], url: str
) -> None:
    body = problem(await _create(production["strict"], url), 422, "body.url")
    assert body["type"].endswith("/webhook-target-refused")


async def test_outside_dev_a_public_https_url_is_accepted_and_private_ones_when_allowed(
    production: dict[str, FastAPI],
) -> None:
    assert (await _create(production["strict"], PUBLIC)).status_code == 201
    assert (await _create(production["lax"], "https://10.1.2.3/hooks")).status_code == 201
    problem(await _create(production["lax"], "https://169.254.169.254/hooks"), 422, "body.url")
    problem(await _create(production["lax"], "http://10.1.2.3/hooks"), 422, "body.url")


async def test_through_the_gateway_admin_makes_them_and_ops_runs_them(
    gateway_client: httpx.AsyncClient,
) -> None:
    ops, storefront = bearer(TEST_KEYS["ops"]), bearer(TEST_KEYS["storefront"])
    body = {"url": PUBLIC, "event_types": [TIER]}
    assert (await gateway_client.post("/v1/webhooks", json=body, headers=ops)).status_code == 403
    made = await gateway_client.post("/v1/webhooks", json=body)
    assert made.status_code == 201, made.text
    sub_id = made.json()["id"]
    assert made.json()["created_by"] == "test-admin"
    for method, path in (
        ("GET", "/v1/webhooks"),
        ("GET", f"/v1/webhooks/{sub_id}"),
        ("GET", f"/v1/webhooks/{sub_id}/deliveries"),
        ("GET", "/v1/webhooks/event-types"),
    ):
        assert (await gateway_client.request(method, path, headers=ops)).status_code == 200
        assert (await gateway_client.request(method, path, headers=storefront)).status_code == 403
    paused = await gateway_client.post(f"/v1/webhooks/{sub_id}/pause", headers=ops)
    assert paused.json()["paused_reason"] == "paused by test-ops"
    for method, path in (
        ("PATCH", f"/v1/webhooks/{sub_id}"),
        ("DELETE", f"/v1/webhooks/{sub_id}"),
        ("POST", f"/v1/webhooks/{sub_id}/rotate-secret"),
    ):
        assert (await gateway_client.request(method, path, headers=ops)).status_code == 403
    assert (await gateway_client.delete(f"/v1/webhooks/{sub_id}")).status_code == 204
