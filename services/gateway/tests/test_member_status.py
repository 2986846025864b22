"""GET /v1/members/{id}/status: three services in parallel, degrading part by part."""

import asyncio
import uuid

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.testing import bearer, gateway_over
from loyalty_shared.testing import RoutingTransport


async def _member_with_complaint(client: httpx.AsyncClient) -> str:
    member = f"m-{uuid.uuid4().hex[:10]}"
    assert (await client.post("/v1/members", json={"member_id": member})).status_code == 201
    complaint = {
        "member_id": member,
        "channel": "app",
        "category": "delivery",
        "description": "The parcel never came",
    }
    assert (await client.post("/v1/complaints", json=complaint)).status_code == 201
    return member


async def test_status_combines_the_three_services(gateway_client: httpx.AsyncClient) -> None:
    member = await _member_with_complaint(gateway_client)
    r = await gateway_client.get(f"/v1/members/{member}/status")
    assert r.status_code == 200
    body = r.json()
    assert body["member_id"] == member
    assert body["membership"]["member_id"] == member
    assert "balance" in body["membership"]
    assert body["open_complaints"] == 1
    assert body["parts"] == {
        "points": {"status": "ok", "reason": None},
        "segmentation": {"status": "ok", "reason": None},
        "feedback": {"status": "ok", "reason": None},
    }


# Actions from "open" to each state of feedback's complaint state machine.
_PATHS = {
    "open": [],
    "acknowledged": ["acknowledge"],
    "in_progress": ["acknowledge", "start"],
    "escalated": ["acknowledge", "escalate"],
    "resolved": ["acknowledge", "resolve"],
    "closed": ["acknowledge", "resolve", "close"],
}


async def test_open_complaints_counts_every_state_before_resolved(
    gateway_client: httpx.AsyncClient,
) -> None:
    member = f"m-{uuid.uuid4().hex[:10]}"
    assert (await gateway_client.post("/v1/members", json={"member_id": member})).status_code == 201
    for state, actions in _PATHS.items():
        r = await gateway_client.post(
            "/v1/complaints",
            json={
                "member_id": member,
                "channel": "app",
                "category": "delivery",
                "description": f"a complaint that ends {state}",
            },
        )
        assert r.status_code == 201, r.text
        complaint = r.json()["id"]
        for action in actions:
            r = await gateway_client.post(
                f"/v1/complaints/{complaint}/actions", json={"action": action}
            )
            assert r.status_code == 200, r.text
        assert r.json()["status"] == state
    r = await gateway_client.get(f"/v1/members/{member}/status")
    assert r.status_code == 200
    # open, acknowledged, in progress and escalated are still being dealt with
    assert r.json()["open_complaints"] == 4
    assert r.json()["parts"]["feedback"] == {"status": "ok", "reason": None}


async def test_status_with_a_service_down_marks_that_part_unavailable(
    gateway_client: httpx.AsyncClient, upstreams: RoutingTransport
) -> None:
    member = await _member_with_complaint(gateway_client)
    upstreams.down.add("segmentation")
    r = await gateway_client.get(f"/v1/members/{member}/status")
    assert r.status_code == 200
    body = r.json()
    assert body["profile"] is None
    assert body["parts"]["segmentation"]["status"] == "unavailable"
    assert body["membership"]["member_id"] == member
    assert body["open_complaints"] == 1
    upstreams.down = {"points"}
    r = await gateway_client.get(f"/v1/members/{member}/status")
    assert r.status_code == 200
    assert r.json()["membership"] is None
    assert r.json()["parts"]["points"]["status"] == "unavailable"
    upstreams.down.clear()


async def test_status_with_a_slow_service_still_answers(
    gateway_client: httpx.AsyncClient,
    points_app: FastAPI,
    segmentation_app: FastAPI,
) -> None:
    member = await _member_with_complaint(gateway_client)
    release = asyncio.Event()

    async def slow(request: Request) -> JSONResponse:
        await release.wait()
        return JSONResponse({"items": []})

    sleepy_feedback = Starlette(routes=[Route("/{path:path}", slow)])
    transport = RoutingTransport(
        {"points": points_app, "segmentation": segmentation_app, "feedback": sleepy_feedback}  # type: ignore[dict-item]
    )
    async with gateway_over(transport, status_part_timeout_seconds=0.3) as client:
        r = await client.get(f"/v1/members/{member}/status")
    release.set()
    assert r.status_code == 200
    body = r.json()
    assert body["parts"]["feedback"] == {"status": "unavailable", "reason": "timeout"}
    assert body["open_complaints"] is None
    assert body["membership"]["member_id"] == member


async def test_status_of_an_unknown_member_is_404(gateway_client: httpx.AsyncClient) -> None:
    r = await gateway_client.get(f"/v1/members/m-{uuid.uuid4().hex[:10]}/status")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


async def test_member_sees_only_its_own_status(
    gateway_client: httpx.AsyncClient, member_token_for
) -> None:  # type: ignore[no-untyped-def]
    member = await _member_with_complaint(gateway_client)
    other = await _member_with_complaint(gateway_client)
    auth = bearer(member_token_for(member))
    r = await gateway_client.get(f"/v1/members/{member}/status", headers=auth)
    assert r.status_code == 200
    assert r.json()["open_complaints"] == 1
    r = await gateway_client.get(f"/v1/members/{other}/status", headers=auth)
    assert r.status_code == 403
    ghost = await gateway_client.get(
        f"/v1/members/m-ghost-{uuid.uuid4().hex[:6]}/status", headers=auth
    )
    assert ghost.status_code == 403
    assert ghost.json() == r.json()


async def test_status_needs_credentials(gateway_app: FastAPI) -> None:
    from loyalty_shared.testing import asgi_client

    async with asgi_client(gateway_app) as anonymous:
        r = await anonymous.get("/v1/members/m-1/status")
        assert r.status_code == 401


async def test_status_summarises_the_profile(
    gateway_client: httpx.AsyncClient, points_app: FastAPI, feedback_app: FastAPI
) -> None:
    member = await _member_with_complaint(gateway_client)

    async def profile(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "member_id": member,
                "value_tier": "high",
                "lifecycle": "active",
                "tags": ["vip", "birthday-month"],
                "order_count": 12,
            }
        )

    fake_segmentation = Starlette(routes=[Route("/v1/profiles/{member_id}", profile)])
    transport = RoutingTransport(
        {"points": points_app, "segmentation": fake_segmentation, "feedback": feedback_app}  # type: ignore[dict-item]
    )
    async with gateway_over(transport) as client:
        r = await client.get(f"/v1/members/{member}/status")
    assert r.status_code == 200
    assert r.json()["profile"] == {
        "value_tier": "high",
        "lifecycle_stage": "active",
        "tags": ["vip", "birthday-month"],
    }
