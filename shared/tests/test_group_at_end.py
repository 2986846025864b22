"""A consumer group made for one test can start where its topics end (real broker)."""

from __future__ import annotations

import uuid
from typing import Any

from loyalty_shared.outbox import OutboxRelay, enqueue
from loyalty_shared.pipeline import consumer_lag
from loyalty_shared.testing import background, eventually, start_group_at_end


async def test_a_group_started_at_the_end_has_no_lag(
    events_db: Any,
) -> None:
    db = events_db
    relay = OutboxRelay(db.settings, db.engine, topics=[db.topic], name=f"r-{uuid.uuid4().hex[:8]}")
    member = f"m-{uuid.uuid4().hex[:10]}"
    async with db.engine.begin() as conn:
        await enqueue(conn, db.outbox, db.topic, *(db.event(member, n) for n in range(3)))
    async with background(relay.run):

        async def published() -> bool:
            lag = await consumer_lag(db.settings, f"probe-{uuid.uuid4().hex[:6]}", [db.topic])
            return sum(p["end"] for p in lag) > 0

        await eventually(published, timeout=30)
    group = f"g-{uuid.uuid4().hex[:8]}"
    before = await consumer_lag(db.settings, group, [db.topic])
    assert sum(p["lag"] for p in before) > 0  # a new group would read from the start
    await start_group_at_end(db.settings, group, [db.topic])
    after = await consumer_lag(db.settings, group, [db.topic])
    assert after and all(p["lag"] == 0 and p["committed"] == p["end"] for p in after)
