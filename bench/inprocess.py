"""In-process measurement for bench/profile_points.py and bench/profile_gateway.py.

One request through an app's ASGI interface (no HTTP server, no wrk), and a measurement:
a warm-up, the CPU time per request (best of three runs, the garbage collector's share
alongside), and with ``profile`` the Python function calls per request and the functions
that take the most time (cProfile on CPU time; ``PROFILE_SORT``, ``PROFILE_ROWS``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any

CONCURRENCY = 8


def arguments(doc: str, requests: int) -> argparse.Namespace:
    """The profiling scripts' command line: what to call, --profile, --requests, --dump."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("what", choices=["orders", "member"], nargs="?", default="orders")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--requests", type=int, default=requests)
    parser.add_argument("--dump", metavar="FILE", help="with --profile: save the pstats there")
    return parser.parse_args()


async def asgi_call(
    app: Any, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
) -> int:
    """One request through the app's ASGI interface; returns the status."""
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
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
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


async def _workers(total: int, step: Callable[[], Awaitable[None]]) -> None:
    async def worker(n: int) -> None:
        for _ in range(n):
            await step()

    await asyncio.gather(*(worker(total // CONCURRENCY) for _ in range(CONCURRENCY)))


async def measure(
    what: str, requests: int, one: Callable[[], Awaitable[None]], profile: bool, dump: str | None
) -> None:
    """Warm up, print the CPU per request (best of three) and, with ``profile``, the calls."""
    await _workers(800, one)  # warm-up: caches, prepared statements, pools, metrics' children
    best = float("inf")
    with GcTimer() as gc_time:
        for _ in range(3):
            started = time.process_time()
            await _workers(requests, one)
            best = min(best, time.process_time() - started)
    print(f"{what}: {best / requests * 1e6:,.0f} µs of CPU per request (best of 3)")
    print(f"{what}: {gc_time.report(3 * requests)}")
    if not profile:
        return
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    await _workers(requests, one)
    profiler.disable()
    stats = pstats.Stats(profiler)
    calls = sum(s[1] for s in stats.stats.values())  # type: ignore[attr-defined]
    print(f"{what}: {calls / requests:,.0f} Python function calls per request")
    order, rows = os.environ.get("PROFILE_SORT", "tottime"), os.environ.get("PROFILE_ROWS")
    stats.sort_stats(order).print_stats(int(rows or 25))
    if dump:
        stats.dump_stats(dump)
