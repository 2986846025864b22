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

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inprocess import arguments, asgi_call, measure

from loyalty_shared.devstack.stack import DEV_KEYS
from loyalty_shared.testing import running_app

HERE = Path(__file__).resolve().parent

MEMBERS = 200

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


HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"authorization", b"Bearer " + DEV_KEYS["storefront"].encode()),
    (b"content-type", b"application/json"),
]


async def call(app: Any, method: str, path: str, body: bytes = b"") -> int:
    """One request through the app's ASGI interface, as wrk sends it; returns the status."""
    return await asgi_call(app, method, path, body, HEADERS)


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

    async with running_app(create_app(settings)) as app:
        await measure(what, requests, one, profile, dump)


def main() -> None:
    args = arguments(__doc__, 4000)
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
