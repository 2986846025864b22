"""CPU and Python calls per request of the points hot paths, in-process (no HTTP, no wrk).

    .venv/bin/python bench/profile_points.py [orders|member] [--profile]

(``PROFILE_LOG_LEVEL=INFO`` keeps the access log on; by default it is off.
``PROFILE_SORT=cumulative`` and ``PROFILE_ROWS=45`` change the listing.)

Drives the ASGI app directly against an embedded Postgres: the CPU time per request
(best of three runs) and, with ``--profile``, the number of Python function calls per
request and the functions that take the most time (cProfile on CPU time). Call counts
do not depend on how busy the machine is, which makes them the figure to compare
between two versions of the code (docs/performance.md). Prints; stores nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from inprocess import arguments, asgi_call, measure

from loyalty_shared.devstack.postgres import EmbeddedPostgres
from loyalty_shared.settings import DEV_GATEWAY_SECRET
from loyalty_shared.testing import running_app

MEMBERS = 200
HOT = os.environ.get("PROFILE_HOT") == "1"  # every order on one member (lock contention)


HEADERS = [
    (b"host", b"bench"),
    (b"content-type", b"application/json"),
    (b"x-gateway-token", DEV_GATEWAY_SECRET.encode()),
]


async def call(app: Any, method: str, path: str, body: Any = None) -> int:
    """One request through the app's ASGI interface; returns the status."""
    raw = orjson.dumps(body) if body is not None else b""
    return await asgi_call(app, method, path, raw, HEADERS)


async def run(url: str, what: str, requests: int, profile: bool, dump: str | None) -> None:
    from points.main import create_app
    from points.settings import PointsSettings

    settings = PointsSettings(
        environment="dev",  # the dev gateway secret the calls carry
        database_url=url,
        kafka_bootstrap="127.0.0.1:1",
        log_level=os.environ.get("PROFILE_LOG_LEVEL", "WARNING"),
    )
    async with running_app(create_app(settings)) as app:
        for i in range(MEMBERS):
            await call(app, "POST", "/v1/members", {"member_id": f"bench-m-{i}"})
        prefix = uuid.uuid4().hex[:6]
        occurred = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        counter = 0

        async def one() -> None:
            nonlocal counter
            counter += 1
            member = "bench-m-0" if HOT else f"bench-m-{counter % MEMBERS}"
            if what == "orders":
                order = {
                    "order_id": f"{prefix}-{counter}",
                    "member_id": member,
                    "amount": "128.50",
                    "occurred_at": occurred,
                }
                assert await call(app, "POST", "/v1/orders", order) == 201
            else:
                assert await call(app, "GET", f"/v1/members/{member}") == 200

        await measure(what, requests, one, profile, dump)


def main() -> None:
    args = arguments(__doc__, 1600)
    with tempfile.TemporaryDirectory(prefix="profile-points-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", fast=True)
        postgres.start()
        try:
            postgres.create_database("profile_points")
            url = postgres.url("profile_points")
            subprocess.run(
                [sys.executable, "-m", "points", "migrate"],
                env={**os.environ, "POINTS_DATABASE_URL": url},
                check=True,
                capture_output=True,
            )
            asyncio.run(run(url, args.what, args.requests, args.profile, args.dump))
        finally:
            postgres.stop()


if __name__ == "__main__":
    main()
