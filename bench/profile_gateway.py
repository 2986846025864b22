"""CPU and Python calls per proxied request of the gateway, in-process (no wrk, no uvicorn).

    .venv/bin/python bench/profile_gateway.py [orders|member] [--profile]

(``PROFILE_LOG_LEVEL=INFO`` keeps the access log on; by default it is off, as in
bench/gateway.py. ``PROFILE_SORT=cumulative`` and ``PROFILE_ROWS=45`` change the listing.)

Drives the gateway's ASGI app directly, with the storefront dev key, against a stub of
points in a child process: a raw HTTP/1.1 server answering every request with a canned
answer shaped like points' (its headers, a JSON body). So the gateway's own work is all
that this process spends: auth, rate limit, policy, the upstream call over its pool,
headers, metrics, logs. Prints the CPU time per request (best of three runs) and, with
``--profile``, the Python function calls per request and the functions that take the most
time (cProfile on CPU time). Call counts do not depend on how busy the machine is, which
makes them the figure to compare between two versions of the code. Stores nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from loyalty_shared.devstack.stack import DEV_KEYS
from loyalty_shared.testing import running_app

HERE = Path(__file__).resolve().parent

MEMBERS = 200
CONCURRENCY = 8

# The stub: one canned answer per request, keep-alive, as points answers through uvicorn.
STUB = r"""
import asyncio, sys, httptools
BODY = (b'{"member_id":"bench-m-1","balance":1285,"lifetime_points":1285,"tier":"bronze",'
        b'"order_id":"o-1","points":128,"entry_id":"0190f3a2b4c5d6e7f8091a2b3c4d5e6f"}')
HEAD = (b"HTTP/1.1 %d OK\r\ndate: Mon, 07 Dec 2026 06:00:00 GMT\r\n"
        b"content-length: %d\r\ncontent-type: application/json\r\n"
        b"x-request-id: 0190f3a2b4c5d6e7f8091a2b3c4d5e6f\r\n\r\n")

class Stub(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
    def on_message_complete(self):
        status = 201 if self.parser.get_method() == b"POST" else 200
        self.transport.write(HEAD % (status, len(BODY)) + BODY)
    def data_received(self, data):
        self.parser.feed_data(data)

async def main():
    server = await asyncio.get_running_loop().create_server(Stub, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def call(app: Any, method: str, path: str, body: bytes = b"") -> int:
    """One request through the app's ASGI interface, as wrk sends it; returns the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", b"Bearer " + DEV_KEYS["storefront"].encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 41234),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    delivered = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the request runs
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


class GcTimer:
    """The garbage collector's passes and CPU time while the block runs (per generation)."""

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.passes[info["generation"]] += 1
            self.seconds += time.process_time() - self._started

    def report(self, requests: int) -> str:
        per_request = self.seconds / requests * 1e6
        return f"garbage collector {per_request:,.0f} µs per request (passes {self.passes})"


async def run(port: int, what: str, requests: int, profile: bool, dump: str | None) -> None:
    from gateway.main import create_app
    from gateway.settings import GatewaySettings

    unlimited = {"rate": 1_000_000, "burst": 1_000_000}
    settings = GatewaySettings(
        environment="dev",
        points_url=f"http://127.0.0.1:{port}",
        log_level=os.environ.get("PROFILE_LOG_LEVEL", "WARNING"),
        rate_limits=dict.fromkeys(("storefront", "ops", "admin", "member"), unlimited),  # type: ignore[arg-type]
    )
    counter = 0

    async def one() -> None:
        nonlocal counter
        counter += 1
        member = f"bench-m-{counter % MEMBERS}"
        if what == "orders":
            body = (
                f'{{"order_id":"p-{counter}","member_id":"{member}","amount":"128.50",'
                f'"occurred_at":"2026-12-07T06:00:00Z"}}'
            ).encode()
            assert await call(app, "POST", "/v1/orders", body) == 201
        else:
            assert await call(app, "GET", f"/v1/members/{member}") == 200

    async def workers(total: int, step: Callable[[], Awaitable[None]]) -> None:
        async def worker(n: int) -> None:
            for _ in range(n):
                await step()

        await asyncio.gather(*(worker(total // CONCURRENCY) for _ in range(CONCURRENCY)))

    async with running_app(create_app(settings)) as app:
        await workers(800, one)  # warm-up: the pool's connections, the metrics' children
        best = float("inf")
        with GcTimer() as gc_time:
            for _ in range(3):
                started = time.process_time()
                await workers(requests, one)
                best = min(best, time.process_time() - started)
        print(f"{what}: {best / requests * 1e6:,.0f} µs of CPU per request (best of 3)")
        print(f"{what}: {gc_time.report(3 * requests)}")
        if profile:
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            await workers(requests, one)
            profiler.disable()
            stats = pstats.Stats(profiler)
            calls = sum(s[1] for s in stats.stats.values())  # type: ignore[attr-defined]
            print(f"{what}: {calls / requests:,.0f} Python function calls per request")
            order, rows = os.environ.get("PROFILE_SORT", "tottime"), os.environ.get("PROFILE_ROWS")
            stats.sort_stats(order).print_stats(int(rows or 25))
            if dump:
                stats.dump_stats(dump)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["orders", "member"], nargs="?", default="orders")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--dump", metavar="FILE", help="with --profile: save the pstats there")
    args = parser.parse_args()
    # bench/gateway.py (the wrk benchmark) would shadow the gateway package: this folder
    # leaves the import path before the package is imported (in ``run``).
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-c", STUB, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert stub.stdout is not None and stub.stdout.readline().strip() == "ready"
        try:
            import uvloop  # as uvicorn runs the gateway

            runner: Callable[[Any], Any] = uvloop.run
        except ImportError:
            runner = asyncio.run
        runner(run(port, args.what, args.requests, args.profile, args.dump))
    finally:
        stub.terminate()
        stub.wait()


if __name__ == "__main__":
    main()
