"""The webhooks worker killed (SIGKILL) while its requests are at the receiver, then started
again: every event is delivered at least once, and a receiver that dedupes by the event id
applies each once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from loyalty_shared.contracts.points import TierChangedV1
from loyalty_shared.testing import eventually, start_group_at_end
from loyalty_shared.topics import ALL_EVENT_TOPICS
from webhooks.testing import IsolatedWebhooks
from webhooks.testing_receiver import receiver


def _worker(wh: IsolatedWebhooks, group: str, log: Path) -> subprocess.Popen[bytes]:
    s = wh.settings
    env = {
        **os.environ,
        "WEBHOOKS_ENVIRONMENT": "test",
        "WEBHOOKS_SERVICE_NAME": group,  # its consumer group, started at the topics' ends
        "WEBHOOKS_DATABASE_URL": s.database_url,
        "WEBHOOKS_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "WEBHOOKS_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "WEBHOOKS_POLL_SECONDS": "0.05",
        "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "1",
        "WEBHOOKS_TIMEOUT_SECONDS": "2",
        "WEBHOOKS_LEASE_GRACE_SECONDS": "0.5",
        "WEBHOOKS_RETRY_BASE_SECONDS": "0.05",
        "WEBHOOKS_LOG_LEVEL": "INFO",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "webhooks", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_killed_mid_delivery_each_event_arrives_and_applies_once(
    isolated_webhooks: IsolatedWebhooks, tmp_path: Path
) -> None:
    wh = isolated_webhooks
    log = tmp_path / "worker.log"  # both workers' logs, for a failure's report
    group = f"webhooks-killed-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(wh.settings, group, ALL_EVENT_TOPICS)
    hold = asyncio.Event()
    worker: subprocess.Popen[bytes] | None = None
    async with receiver() as r:
        sub = await wh.subscribe(r.url("/held", hold=hold), TierChangedV1.TYPE)
        # made by the module's consumer, sent by the worker process
        sent = [await wh.send(TierChangedV1, f"m-{uuid.uuid4().hex[:10]}") for _ in range(3)]

        async def all_made() -> bool:
            return len(await wh.deliveries(sub["id"])) == 3

        await eventually(all_made, timeout=20)
        try:
            worker = _worker(wh, group, log)
            # each request is at the receiver (held there) when the worker is killed
            await eventually(lambda: set(r.ids("/held")) == set(sent), timeout=30)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            hold.set()  # the receiver applies them; nobody hears the answers
            await eventually(lambda: r.effects["/held"] == 3, timeout=10)

            worker = _worker(wh, group, log)

            async def delivered() -> list[dict[str, Any]]:
                found = await wh.deliveries(sub["id"])
                return found if all(d["status"] == "delivered" for d in found) else []

            try:
                done = await eventually(delivered, timeout=90)
            except AssertionError:
                print(log.read_text()[-20_000:])
                raise
        finally:
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=20)
        await wh.client.delete(f"/v1/webhooks/{sub['id']}")

    assert {d["event_id"] for d in done} == set(sent)
    assert all(d["attempts"] == 2 for d in done)  # the killed one counted, then delivered
    for event_id in sent:
        assert r.ids("/held").count(event_id) == 2  # at least once: here, twice
    assert r.effects["/held"] == 3  # and the receiver's dedupe applied each once
