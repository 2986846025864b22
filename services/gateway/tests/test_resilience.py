"""Rate limits, timeouts, retries, circuit breaker, body limit, CORS and security headers."""

import asyncio
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.testing import TEST_KEYS, bearer, echo_app, gateway_over
from loyalty_shared.testing import RoutingTransport, eventually


def _transport(points: Starlette | None = None) -> RoutingTransport:
    echo = echo_app()
    return RoutingTransport(
        {"points": points or echo, "segmentation": echo, "feedback": echo, "webhooks": echo}  # type: ignore[dict-item]
    )


def sleeping_app(release: asyncio.Event) -> Starlette:
    """An upstream that does not answer until ``release`` is set."""

    async def slow(request: Request) -> JSONResponse:
        await release.wait()
        return JSONResponse({"late": True})

    return Starlette(routes=[Route("/{path:path}", slow, methods=["GET", "POST"])])


class FlakyTransport(httpx.AsyncBaseTransport):
    """Refuses the first ``failures`` connections to points, then forwards."""

    def __init__(self, inner: RoutingTransport, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.method)
        if request.url.host == "points" and self.failures > 0:
            self.failures -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


# -- rate limits -------------------------------------------------------------------------


async def test_rate_limit_per_key_gives_429_with_retry_after_and_ratelimit_headers() -> None:
    limits = {
        "storefront": {"rate": 0.01, "burst": 3},
        "ops": {"rate": 0.01, "burst": 3},
        "member": {"rate": 0.01, "burst": 2},
    }
    async with gateway_over(_transport(), key="storefront", rate_limits=limits) as client:
        seen = []
        for _ in range(3):
            r = await client.get("/v1/tiers")
            assert r.status_code == 200
            seen.append(int(r.headers["ratelimit-remaining"]))
            assert r.headers["ratelimit-limit"] == "3"
            assert r.headers["ratelimit-policy"] == "3;w=300"  # burst 3, refilled at 0.01/s
            assert int(r.headers["ratelimit-reset"]) >= 1
        assert seen == [2, 1, 0]
        r = await client.get("/v1/tiers")
        assert r.status_code == 429
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/rate-limited")
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["ratelimit-remaining"] == "0"
        assert "ratelimit-reset" in r.headers
        # another key has its own bucket
        r = await client.get("/v1/tiers", headers=bearer(TEST_KEYS["ops"]))
        assert r.status_code == 200


async def test_rate_limit_per_member_token() -> None:
    limits = {"storefront": {"rate": 1000, "burst": 1000}, "member": {"rate": 0.01, "burst": 2}}
    async with gateway_over(_transport(), key="storefront", rate_limits=limits) as client:
        tokens = []
        for member in ("m-a", "m-b"):
            r = await client.post("/v1/auth/member-tokens", json={"member_id": member})
            tokens.append(r.json()["token"])
        for _ in range(2):
            assert (
                await client.get("/v1/members/m-a", headers=bearer(tokens[0]))
            ).status_code == 200
        r = await client.get("/v1/members/m-a", headers=bearer(tokens[0]))
        assert r.status_code == 429
        assert (await client.get("/v1/members/m-b", headers=bearer(tokens[1]))).status_code == 200


async def test_bucket_refills_over_time() -> None:
    limits = {"storefront": {"rate": 20, "burst": 1}}
    async with gateway_over(_transport(), key="storefront", rate_limits=limits) as client:
        assert (await client.get("/v1/tiers")).status_code == 200
        assert (await client.get("/v1/tiers")).status_code == 429

        async def allowed_again() -> bool:
            return (await client.get("/v1/tiers")).status_code == 200

        await eventually(allowed_again, timeout=5)


# -- upstream failures -------------------------------------------------------------------


async def test_upstream_down_is_a_503_problem_not_a_hang() -> None:
    transport = _transport()
    transport.down.add("points")
    async with gateway_over(transport) as client:
        r = await client.get("/v1/members/m-1")
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/upstream-unavailable")
        assert r.json()["service"] == "points"
        assert "retry-after" in r.headers
        # other services are unaffected
        assert (await client.get("/v1/profiles/m-1")).status_code == 200


async def test_slow_upstream_times_out_with_a_504_problem() -> None:
    release = asyncio.Event()
    async with gateway_over(
        _transport(points=sleeping_app(release)), upstream_timeouts={"points": 0.2}
    ) as client:
        r = await client.get("/v1/members/m-1")
        assert r.status_code == 504
        assert r.json()["type"].endswith("/upstream-timeout")
        # the per-upstream timeout only applies to points
        assert (await client.get("/v1/profiles/m-1")).status_code == 200
    release.set()


async def test_the_history_import_has_its_own_longer_timeout() -> None:
    """POST /v1/orders/batch waits for its route's timeout, not the service's: a batch of
    1,000 orders answers after the other calls' 504 would have come (docs/gateway.md)."""
    release = asyncio.Event()
    async with gateway_over(
        _transport(points=sleeping_app(release)),
        upstream_timeouts={"points": 0.2},
        upstream_route_timeouts={"POST /v1/orders/batch": 30},
    ) as client:
        assert (await client.get("/v1/members/m-1")).status_code == 504
        batch = asyncio.create_task(client.post("/v1/orders/batch", json={"orders": []}))
        await asyncio.sleep(0.6)  # three of the service's timeouts
        release.set()
        assert (await batch).status_code == 200


async def test_idempotent_requests_are_retried_writes_are_not() -> None:
    flaky = FlakyTransport(_transport(), failures=1)
    async with gateway_over(flaky, upstream_retries=1) as client:
        r = await client.get("/v1/members/m-1")
        assert r.status_code == 200
        assert flaky.calls == ["GET", "GET"]

        flaky.failures, flaky.calls = 1, []
        r = await client.post("/v1/orders", json={"order_id": "o-1"})
        assert r.status_code == 503
        assert flaky.calls == ["POST"]

        flaky.failures, flaky.calls = 1, []
        r = await client.post(
            "/v1/members/m-1/redemptions",
            json={"points": 10},
            headers={"Idempotency-Key": "k-1"},
        )
        assert r.status_code == 200
        assert flaky.calls == ["POST", "POST"]


async def test_circuit_breaker_opens_then_recovers() -> None:
    transport = _transport()
    async with gateway_over(
        transport, breaker_failure_threshold=3, breaker_reset_seconds=0.3, upstream_retries=0
    ) as client:
        transport.down.add("points")
        for _ in range(3):
            r = await client.get("/v1/members/m-1")
            assert r.json()["type"].endswith("/upstream-unavailable")
        # open: refused at once, without calling the service
        r = await client.get("/v1/members/m-1")
        assert r.status_code == 503
        assert r.json()["type"].endswith("/circuit-open")
        assert int(r.headers["retry-after"]) >= 1
        ready = await client.get("/ready")
        assert ready.status_code == 503
        # segmentation's breaker is its own
        assert (await client.get("/v1/profiles/m-1")).status_code == 200

        transport.down.clear()

        async def closed_again() -> bool:
            return (await client.get("/v1/members/m-1")).status_code == 200

        await eventually(closed_again, timeout=5)
        assert (await client.get("/v1/members/m-1")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'gateway_upstream_errors_total{kind="circuit-open",service="points"}' in metrics
        assert 'gateway_upstream_errors_total{kind="unavailable",service="points"}' in metrics


async def test_half_open_trial_failure_reopens_the_circuit() -> None:
    transport = _transport()
    async with gateway_over(
        transport, breaker_failure_threshold=1, breaker_reset_seconds=0.2, upstream_retries=0
    ) as client:
        transport.down.add("points")
        await client.get("/v1/members/m-1")
        assert (await client.get("/v1/members/m-1")).json()["type"].endswith("/circuit-open")

        async def trial_failed() -> bool:
            body = (await client.get("/v1/members/m-1")).json()
            return bool(body["type"].endswith("/upstream-unavailable"))

        await eventually(trial_failed, timeout=5)
        r = await client.get("/v1/members/m-1")
        assert r.json()["type"].endswith("/circuit-open")


# -- request limits and headers ----------------------------------------------------------


async def test_body_over_the_limit_is_a_413_problem() -> None:
    async with gateway_over(_transport(), max_body_bytes=2048) as client:
        big = {"order_id": "o-1", "note": "x" * 4096}
        r = await client.post("/v1/orders", json=big)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/body-too-large")
        assert "x-request-id" in r.headers

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"x" * 1024

        r = await client.post("/v1/orders", content=chunks())
        assert r.status_code == 413
        r = await client.post("/v1/orders", json={"order_id": "o-1"})
        assert r.status_code == 200


async def test_body_limit_reads_no_more_of_the_body_than_it_must() -> None:
    """Over the limit by its Content-Length: refused before one byte of the body is read.
    A chunked body: cut off once it passes the limit, never read (or held) to its end."""
    pulled = 0

    async def kilobytes(count: int) -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(count):
            pulled += 1
            yield b"x" * 1024

    async with gateway_over(_transport(), max_body_bytes=2048) as client:
        declared = {"Content-Length": str(1024 * 1024)}
        r = await client.post("/v1/orders", content=kilobytes(1024), headers=declared)
        assert r.status_code == 413
        assert r.json()["type"].endswith("/body-too-large")
        assert pulled == 0
        r = await client.post("/v1/orders", content=kilobytes(1024))  # 1 MiB, chunked
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert pulled == 3  # 1 + 1 KiB reach the limit; the third passes it


async def test_an_unreadable_content_length_is_a_400_problem() -> None:
    async with gateway_over(_transport(), max_body_bytes=2048) as client:
        for value in ("-1", "12abc", "1, 5000"):
            r = await client.post("/v1/orders", content=b"{}", headers={"Content-Length": value})
            assert r.status_code == 400, value
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"].endswith("/invalid-content-length")


async def test_security_headers_on_api_and_docs() -> None:
    async with gateway_over(_transport()) as client:
        r = await client.get("/v1/tiers")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store"
        r = await client.get("/docs")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        r = await client.get("/v1/tiers", headers={"Authorization": ""})
        assert r.headers["x-content-type-options"] == "nosniff"


async def test_cors_is_off_by_default_and_configurable() -> None:
    preflight = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    async with gateway_over(_transport()) as client:
        r = await client.options("/v1/orders", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    async with gateway_over(_transport(), cors_allow_origins=["https://shop.example"]) as client:
        r = await client.options("/v1/orders", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        r = await client.get("/v1/tiers", headers={"Origin": "https://shop.example"})
        assert r.headers["access-control-allow-origin"] == "https://shop.example"
        assert "ratelimit-remaining" in r.headers["access-control-expose-headers"].lower()
        r = await client.options(
            "/v1/orders", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"


async def test_metrics_label_requests_by_route_template() -> None:
    async with gateway_over(_transport()) as client:
        await client.get("/v1/members/m-123")
        text = (await client.get("/metrics")).text
        assert 'route="/v1/members/{member_id}"' in text
        assert "m-123" not in text
        assert "gateway_upstream_duration_seconds_bucket" in text


async def test_unsendable_request_is_a_client_error_not_a_service_failure() -> None:
    import pytest

    from gateway.main import create_app
    from gateway.testing import make_gateway_settings
    from gateway.upstream import UpstreamError
    from loyalty_shared.testing import running_app

    # the production transport refuses to write such a header (before any connection)
    app = create_app(
        make_gateway_settings(breaker_failure_threshold=1, points_url="http://127.0.0.1:9")
    )
    async with running_app(app):
        upstreams = app.state.upstreams
        with pytest.raises(UpstreamError) as caught:
            await upstreams.request("points", "GET", "/v1/x", headers=[("x-a", "1\r\nx-b: 2")])
        assert caught.value.kind == "bad-request"
        with pytest.raises(UpstreamError) as caught:
            await upstreams.request("points", "GET", "/v1/members/\u0436", headers=[])
        assert caught.value.kind == "bad-request"
        assert upstreams.breakers["points"].state == "closed"


async def test_answers_pass_through_as_the_service_gave_them() -> None:
    """Status, headers and body of a service's answer reach the client unchanged."""

    async def answer(request: Request) -> Response:
        status = int(request.query_params.get("status", "200"))
        if status in (204, 304):
            return Response(status_code=status, headers={"ETag": '"v1"'})
        return Response(
            b'{"ok": true}',
            status_code=status,
            media_type="application/vnd.loyalty+json",
            headers={"X-Service-Note": "kept", "Server": "uvicorn-internal"},
        )

    upstream = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "HEAD", "POST"])])
    async with gateway_over(_transport(points=upstream)) as client:
        r = await client.get("/v1/members/m-1?status=201")
        assert r.status_code == 201
        assert r.content == b'{"ok": true}'
        assert r.headers["content-type"] == "application/vnd.loyalty+json"
        assert r.headers["content-length"] == str(len(b'{"ok": true}'))
        assert r.headers["x-service-note"] == "kept"
        assert "server" not in r.headers  # the service's own details stay inside
        assert r.headers["ratelimit-limit"] == "100000"
        for status in (204, 304):
            r = await client.get(f"/v1/members/m-1?status={status}")
            assert r.status_code == status
            assert r.content == b""
            assert "content-length" not in r.headers
            assert r.headers["etag"] == '"v1"'
        r = await client.head("/v1/members/m-1")
        assert r.status_code == 200
        assert r.content == b""
        r = await client.post("/v1/orders?status=409", json={"order_id": "o-1"})
        assert r.status_code == 409
        assert r.json() == {"ok": True}


async def test_a_services_own_busy_answer_does_not_open_the_circuit() -> None:
    """A 503 with Retry-After (the service's database restarting) is passed on as it is and
    never opens the breaker; a 503 without it (a proxy in between failing) does."""
    answers: list[dict[str, str]] = [{"retry-after": "1"}]

    async def busy(request: Request) -> JSONResponse:
        return JSONResponse({"type": "database-unavailable"}, status_code=503, headers=answers[0])

    app = Starlette(routes=[Route("/v1/members/{member_id}", busy)])
    transport = _transport(points=app)
    async with gateway_over(
        transport, breaker_failure_threshold=2, breaker_reset_seconds=60, upstream_retries=0
    ) as client:
        for _ in range(5):
            r = await client.get("/v1/members/m-1")
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json()["type"] == "database-unavailable"  # the service's own answer
        answers[0] = {}
        for _ in range(2):
            await client.get("/v1/members/m-1")
        r = await client.get("/v1/members/m-1")
        assert r.json()["type"].endswith("/circuit-open")
