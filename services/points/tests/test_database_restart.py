"""The checkout recovers right after Postgres restarts (its own server, under load).

The fault suite restarted Postgres under load; it was back within seconds, yet the
checkout kept failing for about 70 s: a driver connection whose server went away
mid-statement answers "another operation is in progress" (asyncpg's InternalClientError)
from then on, and the optimistic write kept it (then on a shelf) after each failure."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from loyalty_shared.devstack.postgres import EmbeddedPostgres
from loyalty_shared.migrations import upgrade_head
from loyalty_shared.testing import asgi_client, running_app
from points.main import create_app
from points.settings import PointsSettings

SERVICE_DIR = Path(__file__).resolve().parents[1]


async def test_checkouts_recover_right_after_a_postgres_restart(tmp_path: Path) -> None:
    postgres = EmbeddedPostgres(tmp_path / "pg", fast=True, max_connections=60)
    await asyncio.to_thread(postgres.start)
    try:
        await asyncio.to_thread(postgres.wait_ready)
        await asyncio.to_thread(postgres.create_database, "points")
        url = postgres.url("points", driver="postgresql+asyncpg")
        await asyncio.to_thread(upgrade_head, SERVICE_DIR, url)
        settings = PointsSettings(
            environment="test", database_url=url, kafka_bootstrap="127.0.0.1:1", db_pool_size=8
        )
        members = [f"m-{uuid.uuid4().hex[:10]}" for _ in range(20)]
        async with running_app(create_app(settings)) as app, asgi_client(app) as client:
            for m in members:
                assert (await client.post("/v1/members", json={"member_id": m})).status_code == 201

            statuses: Counter[int] = Counter()
            last_failure = [0.0]

            async def order(m: str) -> None:
                body = {
                    "order_id": f"o-{uuid.uuid4().hex}",
                    "member_id": m,
                    "amount": "10",
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
                answer = await client.post("/v1/orders", json=body)
                statuses[answer.status_code] += 1
                if answer.status_code != 201:
                    last_failure[0] = time.monotonic()

            stop = asyncio.Event()

            async def load(m: str) -> None:
                while not stop.is_set():
                    await order(m)

            loaders = [asyncio.create_task(load(m)) for m in members]
            await asyncio.sleep(1.0)
            await asyncio.to_thread(postgres.stop)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(postgres.start)
            await asyncio.to_thread(postgres.wait_ready)
            back = time.monotonic()
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.gather(*loaders)
            assert set(statuses) <= {201, 503}, statuses  # never a 500
            assert statuses[201] > 0 and statuses[503] > 0, statuses  # the restart was felt
            assert last_failure[0] - back < 1.0, statuses  # and over once the server was back
    finally:
        await asyncio.to_thread(postgres.stop)
