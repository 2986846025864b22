"""GET /v1/members/{id}/export through the gateway: one document, a part per service, all or
nothing (over the real services in process)."""

import uuid
from collections.abc import Callable

import httpx
from fastapi import FastAPI

from gateway.testing import TEST_KEYS, bearer
from loyalty_shared.testing import RoutingTransport
from segmentation.settings import SegmentationSettings
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled


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


async def test_export_holds_each_services_own_export(
    gateway_client: httpx.AsyncClient,
    points_client: httpx.AsyncClient,
    segmentation_app: FastAPI,
    segmentation_client: httpx.AsyncClient,
    segmentation_settings: SegmentationSettings,
    feedback_client: httpx.AsyncClient,
) -> None:
    member = await _member_with_complaint(gateway_client)
    # segmentation learns of the member from points' event, as its consumer would apply it
    segmentation = FreshSegmentation(segmentation_app, segmentation_client, segmentation_settings)
    await segmentation.feed(enrolled(member))

    r = await gateway_client.get(f"/v1/members/{member}/export")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"member_id", "points", "segmentation", "feedback"}
    assert body["member_id"] == member
    own = {
        "points": await points_client.get(f"/v1/members/{member}/export"),
        "segmentation": await segmentation_client.get(f"/v1/profiles/{member}/export"),
        "feedback": await feedback_client.get(f"/v1/feedback/members/{member}/export"),
    }
    for service, answer in own.items():
        assert answer.status_code == 200, (service, answer.text)
        assert body[service] == answer.json(), service
    assert body["points"]["member"]["member_id"] == member
    assert body["segmentation"]["profile"]["member_id"] == member
    assert [c["description"] for c in body["feedback"]["complaints"]] == ["The parcel never came"]


async def test_a_service_holding_nothing_is_a_null_part(
    gateway_client: httpx.AsyncClient,
) -> None:
    member = f"m-{uuid.uuid4().hex[:10]}"
    assert (await gateway_client.post("/v1/members", json={"member_id": member})).status_code == 201
    r = await gateway_client.get(f"/v1/members/{member}/export")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["points"]["member"]["member_id"] == member
    assert body["segmentation"] is None
    assert body["feedback"] is None


async def test_a_member_reads_only_their_own_export(
    gateway_client: httpx.AsyncClient, member_token_for: Callable[[str], str]
) -> None:
    member = await _member_with_complaint(gateway_client)
    own = await gateway_client.get(
        f"/v1/members/{member}/export", headers=bearer(member_token_for(member))
    )
    assert own.status_code == 200, own.text
    assert own.json()["points"]["member"]["member_id"] == member
    other = await gateway_client.get(
        f"/v1/members/{member}/export", headers=bearer(member_token_for("m-someone-else"))
    )
    assert other.status_code == 403
    for scope in ("storefront", "ops"):
        r = await gateway_client.get(
            f"/v1/members/{member}/export", headers=bearer(TEST_KEYS[scope])
        )
        assert r.status_code == 403, scope


async def test_unknown_or_erased_member_is_a_404(gateway_client: httpx.AsyncClient) -> None:
    r = await gateway_client.get(f"/v1/members/m-{uuid.uuid4().hex[:10]}/export")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/member-not-found")

    member = await _member_with_complaint(gateway_client)
    assert (await gateway_client.delete(f"/v1/members/{member}")).status_code == 202
    r = await gateway_client.get(f"/v1/members/{member}/export")
    assert r.status_code == 404
    assert r.json()["type"].endswith("/member-not-found")


async def test_a_service_down_makes_the_export_a_503_naming_it(
    gateway_client: httpx.AsyncClient, upstreams: RoutingTransport
) -> None:
    member = await _member_with_complaint(gateway_client)
    for down in (["feedback"], ["segmentation", "feedback"], ["points"]):
        upstreams.down.clear()
        upstreams.down.update(down)
        r = await gateway_client.get(f"/v1/members/{member}/export")
        assert r.status_code == 503, (down, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"].endswith("/export-incomplete")
        assert problem["services"] == down
        for service in down:
            assert service in problem["detail"]
        assert int(r.headers["retry-after"]) >= 1
    upstreams.down.clear()
    assert (await gateway_client.get(f"/v1/members/{member}/export")).status_code == 200


async def test_points_not_knowing_the_member_wins_over_a_service_down(
    gateway_client: httpx.AsyncClient, upstreams: RoutingTransport
) -> None:
    upstreams.down.add("feedback")
    r = await gateway_client.get(f"/v1/members/m-{uuid.uuid4().hex[:10]}/export")
    assert r.status_code == 404
    assert r.json()["type"].endswith("/member-not-found")


async def test_an_invalid_member_id_is_a_422_naming_the_field(
    gateway_client: httpx.AsyncClient,
) -> None:
    r = await gateway_client.get("/v1/members/a%20b/export")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "path.member_id"
