"""Gateway v1 over the real services: routing, request ids, merged OpenAPI, docs, readiness."""

import re
import uuid

import httpx
import pytest

from gateway import policy
from gateway.testing import TEST_KEYS, bearer
from loyalty_shared.testing import RoutingTransport


async def test_requests_reach_the_owning_service(gateway_client: httpx.AsyncClient) -> None:
    member = f"m-{uuid.uuid4().hex[:10]}"
    r = await gateway_client.post("/v1/members", json={"member_id": member})
    assert r.status_code == 201
    r = await gateway_client.get(f"/v1/members/{member}")
    assert r.status_code == 200
    assert r.json()["member_id"] == member
    # segmentation and feedback answer through the same gateway
    r = await gateway_client.get(f"/v1/complaints?member_id={member}")
    assert r.status_code == 200
    assert r.json()["items"] == []
    r = await gateway_client.get(f"/v1/profiles/{member}")
    assert r.status_code in (200, 404)
    assert r.headers["content-type"].startswith("application/")


async def test_service_problems_pass_through_unchanged(gateway_client: httpx.AsyncClient) -> None:
    r = await gateway_client.post("/v1/members", json={"member_id": ""})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"].endswith("member_id")


async def test_request_id_is_passed_through_and_returned(gateway_client: httpx.AsyncClient) -> None:
    member = f"m-{uuid.uuid4().hex[:10]}"
    r = await gateway_client.post(
        "/v1/members", json={"member_id": member}, headers={"X-Request-ID": "trace-gw-1"}
    )
    assert r.headers["x-request-id"] == "trace-gw-1"
    r = await gateway_client.get(f"/v1/members/{member}")
    made = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    # problems the gateway makes itself carry it too
    r = await gateway_client.get("/v1/nowhere", headers={"X-Request-ID": "trace-gw-2"})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "trace-gw-2"


async def test_request_id_reaches_the_service(gateway_app, points_app) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    class Spy(httpx.AsyncBaseTransport):
        def __init__(self, inner: RoutingTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("x-request-id", ""))
            return await self.inner.handle_async_request(request)

    from gateway.testing import gateway_over

    transport = Spy(RoutingTransport({"points": points_app}))
    async with gateway_over(transport) as client:
        await client.get("/v1/members/m-unknown", headers={"X-Request-ID": "trace-gw-3"})
    assert seen == ["trace-gw-3"]


async def test_merged_openapi_lists_every_service_and_the_scopes(
    gateway_client: httpx.AsyncClient,
) -> None:
    r = await gateway_client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    paths = doc["paths"]
    assert "/v1/members" in paths and "/v1/orders" in paths  # points
    assert "/v1/profiles/{member_id}" in paths  # segmentation
    assert "/v1/complaints" in paths  # feedback
    assert "/v1/auth/member-tokens" in paths and "/v1/members/{member_id}/status" in paths
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["memberToken"]["bearerFormat"] == "JWT"
    get_member = paths["/v1/members/{member_id}"]["get"]
    assert get_member["x-allowed-scopes"] == ["admin", "ops", "storefront", "member:self"]
    assert {"memberToken": []} in get_member["security"]
    assert "Who may call" in get_member["description"]
    assert paths["/v1/orders"]["post"]["x-allowed-scopes"] == ["admin", "storefront"]
    # every $ref resolves
    schemas = doc["components"]["schemas"]
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', r.text):
        assert ref in schemas, ref


async def test_openapi_and_docs_need_no_credentials(gateway_app) -> None:  # type: ignore[no-untyped-def]
    from loyalty_shared.testing import asgi_client

    async with asgi_client(gateway_app) as anonymous:
        assert (await anonymous.get("/openapi.json")).status_code == 200
        assert (await anonymous.get("/health")).status_code == 200


async def test_docs_page_and_its_assets_are_served_by_the_gateway(
    gateway_client: httpx.AsyncClient,
) -> None:
    r = await gateway_client.get("/docs")
    assert r.status_code == 200
    page = r.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", page)
    assert assets, page
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the gateway"
        served = await gateway_client.get(asset)
        assert served.status_code == 200
        assert len(served.content) > 10_000
    assert "/openapi.json" in page
    assert "persistAuthorization" in page


async def test_ready_lists_each_service_and_is_503_while_one_is_down(
    gateway_client: httpx.AsyncClient, upstreams: RoutingTransport
) -> None:
    r = await gateway_client.get("/ready")
    assert r.status_code == 200
    checks = r.json()["checks"]
    assert {"points", "segmentation", "feedback"} <= set(checks)
    assert all(c["ok"] for c in checks.values())
    upstreams.down.add("feedback")
    r = await gateway_client.get("/ready")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["feedback"]["ok"] is False
    assert checks["points"]["ok"] is True


async def test_down_upstream_is_a_503_problem(
    gateway_client: httpx.AsyncClient, upstreams: RoutingTransport
) -> None:
    upstreams.down.add("segmentation")
    r = await gateway_client.get(f"/v1/profiles/m-{uuid.uuid4().hex[:8]}")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["service"] == "segmentation"


async def test_unknown_route_is_a_404_problem(gateway_client: httpx.AsyncClient) -> None:
    r = await gateway_client.get("/v1/unknown-things")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = await gateway_client.get("/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


async def test_anonymous_calls_are_401(gateway_app) -> None:  # type: ignore[no-untyped-def]
    from loyalty_shared.testing import asgi_client

    async with asgi_client(gateway_app) as anonymous:
        r = await anonymous.post("/v1/members", json={"member_id": "m-anon"})
        assert r.status_code == 401
        r = await anonymous.post(
            "/v1/members", json={"member_id": "m-anon"}, headers=bearer(TEST_KEYS["storefront"])
        )
        assert r.status_code in (200, 201)


def test_every_policy_rule_has_an_owner_or_is_the_gateways() -> None:
    from gateway.routing import COMPOSED, owner_of

    for rule in policy.POLICY:
        template = rule.template.replace("{ref}", "points.dlq.1")
        assert (
            owner_of(template)
            or rule.template.startswith("/v1/auth/")
            or (rule.method, rule.template) in COMPOSED
        ), rule


async def test_access_log_is_json_with_route_and_caller(
    gateway_client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    capsys.readouterr()
    await gateway_client.get("/v1/members/m-log-1", headers={"X-Request-ID": "trace-log"})
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    access = [
        line
        for line in lines
        if line.get("msg") == "request" and line.get("request_id") == "trace-log"
    ]
    assert access, lines
    entry = access[-1]
    assert entry["route"] == "/v1/members/{member_id}"
    assert entry["caller"] == "test-admin"
    assert entry["caller_scope"] == "admin"
    assert isinstance(entry["duration_ms"], float | int)
