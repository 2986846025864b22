"""The gateway's own HTTP/1.1 transport, against a real uvicorn server on a socket."""

import asyncio
import contextlib
import gc
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.fast_transport import FastTransport, _Answer
from gateway.main import create_app
from gateway.testing import TEST_KEYS, bearer, make_gateway_settings
from gateway.upstream import UpstreamError
from loyalty_shared.testing import asgi_client, eventually, running_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def upstream_app(release: asyncio.Event) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        client = request.scope["client"]
        return JSONResponse(
            {
                "method": request.method,
                "path": request.scope["path"],
                "query": request.url.query,
                "headers": dict(request.headers),
                "body": body.decode(),
                "client_port": client[1] if client else None,
            },
            headers={"x-note": "caf\u00e9"},  # latin-1 on the wire
        )

    async def chunked(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"part-{i};".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    async def big(request: Request) -> Response:
        return Response(b"x" * 1_000_000, media_type="application/octet-stream")

    async def empty(request: Request) -> Response:
        return Response(status_code=204)

    async def closing(request: Request) -> JSONResponse:
        return JSONResponse({"bye": True}, headers={"Connection": "close"})

    async def slow(request: Request) -> JSONResponse:
        await release.wait()
        return JSONResponse({"late": True})

    return Starlette(
        routes=[
            Route("/chunked", chunked),
            Route("/big", big),
            Route("/empty", empty),
            Route("/close", closing),
            Route("/slow", slow),
            Route("/{path:path}", echo, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )


@asynccontextmanager
async def serving(app: Starlette, port: int) -> AsyncIterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, asyncio.Event]]:
    release = asyncio.Event()
    async with serving(upstream_app(release), _free_port()) as base:
        yield base, release
        release.set()


async def test_requests_and_responses_round_trip_over_one_kept_alive_connection(
    upstream: tuple[str, asyncio.Event],
) -> None:
    base, _ = upstream
    transport = FastTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        first = await client.get(f"{base}/v1/members/m-1?x=1&y=%20z", headers={"X-Trace": "a"})
        assert first.status_code == 200
        body = first.json()
        assert body["path"] == "/v1/members/m-1"
        assert body["query"] == "x=1&y=%20z"
        assert body["headers"]["x-trace"] == "a"
        posted = await client.post(f"{base}/v1/orders", json={"order_id": "o-1"})
        assert posted.json()["body"] == '{"order_id":"o-1"}'
        assert posted.json()["headers"]["content-length"] == str(len('{"order_id":"o-1"}'))
        assert posted.json()["client_port"] == body["client_port"]  # the same connection
        empty_post = await client.post(f"{base}/v1/x")
        assert empty_post.json()["headers"]["content-length"] == "0"
        assert (await client.delete(f"{base}/v1/x")).json()["method"] == "DELETE"


async def test_chunked_large_empty_and_head_responses(upstream: tuple[str, asyncio.Event]) -> None:
    base, _ = upstream
    async with httpx.AsyncClient(transport=FastTransport()) as client:
        assert (await client.get(f"{base}/chunked")).text == "part-0;part-1;part-2;part-3;part-4;"
        assert len((await client.get(f"{base}/big")).content) == 1_000_000
        empty = await client.get(f"{base}/empty")
        assert empty.status_code == 204 and empty.content == b""
        head = await client.head(f"{base}/v1/members/m-1")
        assert head.status_code == 200 and head.content == b""
        # still in step after all of them
        assert (await client.get(f"{base}/v1/ok")).json()["path"] == "/v1/ok"


async def test_connection_close_and_server_restart_do_not_break_later_calls() -> None:
    port = _free_port()
    release = asyncio.Event()
    async with httpx.AsyncClient(transport=FastTransport()) as client:
        async with serving(upstream_app(release), port) as base:
            assert (await client.get(f"{base}/close")).json() == {"bye": True}
            first = (await client.get(f"{base}/v1/a")).json()["client_port"]
        # the server went away and came back: the pooled connection is dead
        async with serving(upstream_app(release), port) as base:
            again = await client.get(f"{base}/v1/b")
            assert again.status_code == 200
            assert again.json()["client_port"] != first
        release.set()


async def test_connections_idle_too_long_are_not_reused(
    upstream: tuple[str, asyncio.Event],
) -> None:
    base, _ = upstream
    async with httpx.AsyncClient(transport=FastTransport(max_idle_seconds=0.0)) as client:
        first = (await client.get(f"{base}/v1/a")).json()["client_port"]
        second = (await client.get(f"{base}/v1/b")).json()["client_port"]
        assert first != second


async def test_refused_connection_is_a_connect_error() -> None:
    async with httpx.AsyncClient(transport=FastTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{_free_port()}/v1/x")


async def test_header_injection_is_refused(upstream: tuple[str, asyncio.Event]) -> None:
    base, _ = upstream
    request = httpx.Request("GET", f"{base}/v1/x", headers={"X-Evil": "a"})
    request.headers["X-Evil"] = "a\r\nX-Injected: 1"
    with pytest.raises(httpx.HTTPError):
        await FastTransport().handle_async_request(request)


async def test_gateway_over_real_sockets_with_timeout_and_recovery(
    upstream: tuple[str, asyncio.Event],
) -> None:
    base, release = upstream
    settings = make_gateway_settings(
        points_url=base,
        segmentation_url=base,
        feedback_url=base,
        webhooks_url=base,
        upstream_timeouts={"points": 0.3},
    )
    app = create_app(settings)  # no transport given: the production one
    async with running_app(app), asgi_client(app) as client:
        client.headers.update(bearer(TEST_KEYS["admin"]))
        assert isinstance(app.state.upstreams.transport, FastTransport)
        r = await client.get("/v1/members/m-1", headers={"X-Request-ID": "trace-fast"})
        assert r.status_code == 200
        seen = r.json()
        assert seen["headers"]["x-request-id"] == "trace-fast"
        assert seen["headers"]["x-caller-scope"] == "admin"
        assert "authorization" not in seen["headers"]
        r = await client.post("/v1/orders", json={"order_id": "o-9"})
        assert r.json()["body"] == '{"order_id":"o-9"}'
        # header values outside ASCII pass both ways, byte for byte
        r = await client.post(
            "/v1/orders",
            json={"order_id": "o-10"},
            headers={"Idempotency-Key": "cl\u00e9-\u043a".encode()},
        )
        assert r.status_code == 200
        assert r.json()["headers"]["idempotency-key"] == "cl\u00e9-\u043a".encode().decode(
            "latin-1"
        )
        assert r.headers.raw[[k for k, _ in r.headers.raw].index(b"x-note")][1] == b"caf\xe9"
        r = await client.get("/v1/members/a%3Fb%20c/ledger?limit=5")
        assert (r.json()["path"], r.json()["query"]) == ("/v1/members/a?b c/ledger", "limit=5")
        # a call that outlives its timeout is a 504 problem (the route /slow is reached
        # through the gateway's upstream caller: it is in no policy)
        with pytest.raises(UpstreamError) as caught:
            await app.state.upstreams.request("points", "GET", "/slow", headers=[])
        assert caught.value.kind == "timeout"
        # the timed-out connection is not reused: the next call answers normally
        r = await client.get("/v1/members/m-2")
        assert r.status_code == 200
        assert r.json()["path"] == "/v1/members/m-2"
        assert (await client.get("/ready")).status_code == 200
    release.set()


async def test_circuit_breaker_with_the_upstream_killed_and_restarted() -> None:
    """The service's server goes away (its sockets close), then comes back on the same port."""
    port = _free_port()
    release = asyncio.Event()
    base = f"http://127.0.0.1:{port}"
    settings = make_gateway_settings(
        points_url=base,
        segmentation_url=base,
        feedback_url=base,
        webhooks_url=base,
        breaker_failure_threshold=3,
        breaker_reset_seconds=0.5,
        upstream_retries=0,
    )
    app = create_app(settings)  # the production transport, over real sockets
    async with running_app(app), asgi_client(app) as client:
        client.headers.update(bearer(TEST_KEYS["admin"]))
        async with serving(upstream_app(release), port):
            assert (await client.get("/v1/members/m-1")).status_code == 200  # a pooled connection
        # killed: the pooled connection is dead and new ones are refused
        for _ in range(3):
            r = await client.get("/v1/members/m-1")
            assert r.status_code == 503
            assert r.json()["type"].endswith("/upstream-unavailable")
            assert r.headers["retry-after"] == "5"
        r = await client.get("/v1/members/m-1")
        assert r.status_code == 503
        assert r.json()["type"].endswith("/circuit-open")
        assert int(r.headers["retry-after"]) >= 1
        # writes are refused the same way, never sent
        r = await client.post("/v1/orders", json={"order_id": "o-1"})
        assert r.json()["type"].endswith("/circuit-open")
        metrics = (await client.get("/metrics")).text
        assert 'gateway_upstream_errors_total{kind="circuit-open",service="points"}' in metrics

        async with serving(upstream_app(release), port):

            async def closed_again() -> bool:
                return (await client.get("/v1/members/m-2")).status_code == 200

            await eventually(closed_again, timeout=10)
            assert app.state.upstreams.breakers["points"].state == "closed"
            assert (await client.post("/v1/orders", json={"order_id": "o-2"})).status_code == 200
    release.set()


async def test_bytes_after_an_answer_retire_the_connection() -> None:
    """A service that sends more than its answer: those bytes belong to no request, so the
    connection is closed instead of being read as the next answer."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number = connections
        while await reader.readuntil(b"\r\n\r\n"):  # (the client closing ends it)
            body = b'{"connection": %d}' % number
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await asyncio.sleep(0.05)  # the answer is taken and the connection pooled
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstale!")
            await writer.drain()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await handle(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(transport=FastTransport()) as client:
            first = await client.get(f"http://127.0.0.1:{port}/a")
            assert first.json() == {"connection": 1}
            await asyncio.sleep(0.2)
            second = await client.get(f"http://127.0.0.1:{port}/b")
            assert second.json() == {"connection": 2}  # not the stale bytes
    finally:
        server.close()


async def test_answers_are_freed_without_the_garbage_collector(
    upstream: tuple[str, asyncio.Event],
) -> None:
    """No reference cycle per request (the parser is the connection's, not the answer's):
    with the collector off, no answer outlives its request."""
    base, _ = upstream
    async with httpx.AsyncClient(transport=FastTransport()) as client:
        gc.collect()  # answers of earlier tests' failed calls (a traceback holds them)
        gc.disable()
        try:
            for _ in range(20):
                assert (await client.get(f"{base}/v1/x")).status_code == 200
            alive = [o for o in gc.get_objects() if isinstance(o, _Answer)]
        finally:
            gc.enable()
    assert alive == []
