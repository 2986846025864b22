"""The outbox relay against real Postgres and the real broker (each test: own database, topic)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import EventConsumer
from loyalty_shared.outbox import OutboxRelay, enqueue
from loyalty_shared.request_context import request_id_var
from loyalty_shared.testing import Infra, background, eventually


def _relay(db: Any, **settings_changes: Any) -> OutboxRelay:
    settings = db.with_settings(**settings_changes) if settings_changes else db.settings
    return OutboxRelay(settings, db.engine, topics=[db.topic], name=f"relay-{uuid.uuid4().hex[:8]}")


def _member() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


async def _all_sent(db: Any, count: int) -> list[Any] | None:
    rows = await db.outbox_rows()
    return rows if len(rows) == count and all(r.sent_at is not None for r in rows) else None


async def test_relay_publishes_in_order_keyed_by_member_with_headers_and_marks_rows_sent(
    events_db: Any,
) -> None:
    db = events_db
    alice, bob = _member(), _member()
    token = request_id_var.set("req-outbox-order")
    try:
        for n in range(4):  # one transaction per step, as a service would write them
            async with db.engine.begin() as conn:
                await enqueue(conn, db.outbox, db.topic, db.event(alice, n), db.event(bob, n))
    finally:
        request_id_var.reset(token)

    async with background(_relay(db).run):
        records = await db.read(db.topic, 8)
        rows = await eventually(lambda: _all_sent(db, 8), timeout=60)

    assert len(records) == 8  # each event once
    events = {r.offset: CloudEvent.from_json_bytes(r.value) for r in records}
    for member in (alice, bob):
        mine = sorted((r for r in records if r.key == member.encode()), key=lambda r: r.offset)
        assert len({r.partition for r in mine}) == 1  # one member, one partition
        assert [CloudEvent.from_json_bytes(r.value).data["n"] for r in mine] == [0, 1, 2, 3]
        for record in mine:
            assert CloudEvent.from_json_bytes(record.value).subject == member
    for record in records:
        headers = dict(record.headers)
        assert headers["x-request-id"] == b"req-outbox-order"
        assert headers["ce_type"] == db.event("x").type.encode()
        assert events[record.offset].type == db.event("x").type
    # rows carry where the broker put them
    where = {CloudEvent.from_json_bytes(r.value).id: (r.partition, r.offset) for r in records}
    for row in rows:
        assert where[row.event_id] == (row.kafka_partition, row.kafka_offset)
        assert row.topic == db.topic


async def test_events_of_a_rolled_back_transaction_are_never_published(events_db: Any) -> None:
    db = events_db
    member = _member()
    doomed = db.event(member, 1)
    kept = db.event(member, 2)
    relay = _relay(db)
    async with background(relay.run):
        async with db.engine.connect() as conn:
            transaction = await conn.begin()
            await enqueue(conn, db.outbox, db.topic, doomed)
            await transaction.rollback()
        async with db.engine.begin() as conn:
            await enqueue(conn, db.outbox, db.topic, kept)
        rows = await eventually(lambda: _all_sent(db, 1), timeout=60)
        records = await db.read(db.topic, 1)

    assert [r.event_id for r in rows] == [kept.id]
    assert [CloudEvent.from_json_bytes(r.value).id for r in records] == [kept.id]


async def test_relay_wakes_on_notify_long_before_its_poll_interval(events_db: Any) -> None:
    db = events_db
    # polling every 10 minutes: only a NOTIFY can make the relay publish within the test
    relay = _relay(db, outbox_poll_seconds=600.0, outbox_broker_check_seconds=600.0)
    member = _member()
    async with background(relay.run):
        async with db.engine.begin() as conn:
            await enqueue(conn, db.outbox, db.topic, db.event(member, 1))
        await eventually(lambda: relay.published >= 1, timeout=60)
        # the relay has said it is idle: it waits for a notification (or 600 s)
        await eventually(lambda: _relay_idle(db), timeout=60)
        async with db.engine.begin() as conn:
            await enqueue(conn, db.outbox, db.topic, db.event(member, 2))
        await eventually(lambda: _all_sent(db, 2), timeout=60)
    assert relay.published == 2


async def test_relay_keeps_retrying_while_the_broker_is_down_then_publishes_the_backlog(
    events_db: Any, infra: Infra
) -> None:
    if not infra.can_restart_broker:
        pytest.skip("the broker is external: it cannot be stopped by the tests")
    assert infra.broker is not None
    db = events_db
    relay = _relay(db)
    backlog = [db.event(_member(), n) for n in range(30)]
    async with background(relay.run):
        first = db.event(_member(), 0)
        async with db.engine.begin() as conn:
            await enqueue(conn, db.outbox, db.topic, first)
        await eventually(lambda: _all_sent(db, 1), timeout=60)

        await asyncio.to_thread(infra.broker.stop)
        try:
            failures_before = relay.failures
            for chunk in range(0, len(backlog), 10):
                async with db.engine.begin() as conn:
                    await enqueue(conn, db.outbox, db.topic, *backlog[chunk : chunk + 10])
            # the relay fails, backs off and tries again, more than once, without dying
            await eventually(lambda: relay.failures >= failures_before + 2, timeout=90)
            unsent = [r for r in await db.outbox_rows() if r.sent_at is None]
            assert len(unsent) == len(backlog)
        finally:
            await asyncio.to_thread(infra.broker.start)

        await eventually(lambda: _all_sent(db, 1 + len(backlog)), timeout=90)
        # the restarted broker lost ``first``: the relay noticed and published it again
        records = await db.read(db.topic, 1 + len(backlog))
    published = [CloudEvent.from_json_bytes(r.value).id for r in records]
    assert sorted(published) == sorted([first.id, *(e.id for e in backlog)])
    assert relay.replays >= 1


async def test_broker_restart_replays_retained_rows_and_the_idempotent_consumer_applies_once(
    events_db: Any, restart_broker: Any
) -> None:
    db = events_db
    members = [_member() for _ in range(3)]
    before = [db.event(members[n % 3], n) for n in range(12)]
    after = [db.event(members[n % 3], 100 + n) for n in range(6)]
    relay = _relay(db)
    consumer = EventConsumer(
        db.settings,
        db.sessionmaker,
        topics=[db.topic],
        handlers={db.event("x").type: db.count_effect},
        group_id=f"g-{uuid.uuid4().hex[:8]}",
    )

    async def applied() -> int:
        return sum((await db.effects()).values())

    async with background(relay.run, consumer.run):
        async with db.engine.begin() as conn:
            await enqueue(conn, db.outbox, db.topic, *before)
        await eventually(lambda: _equals(applied, len(before)), timeout=60)

        await restart_broker()

        # the relay finds the broker empty and publishes every retained row again
        await eventually(lambda: relay.replays >= 1, timeout=90)
        async with db.engine.begin() as conn:
            await enqueue(conn, db.outbox, db.topic, *after)
        total = len(before) + len(after)
        await eventually(lambda: _equals(applied, total), timeout=90)
        records = await db.read(db.topic, total)
        # the consumer has seen the replayed events again: they changed nothing
        await eventually(lambda: consumer.stats.duplicates >= len(before), timeout=90)

    replayed = {CloudEvent.from_json_bytes(r.value).id for r in records}
    assert replayed >= {e.id for e in before}  # the replay is on the new broker
    effects = await db.effects()
    assert effects == dict.fromkeys(members, 6)
    assert sorted(await db.inbox_ids()) == sorted(e.id for e in [*before, *after])


async def _equals(check: Callable[[], Awaitable[int]], expected: int) -> bool:
    return bool(await check() == expected)


async def test_relay_recovers_when_its_listen_connection_is_killed(events_db: Any) -> None:
    db = events_db
    # only NOTIFY can make it publish within the test: the relay must listen again
    relay = _relay(db, outbox_poll_seconds=600.0, outbox_broker_check_seconds=600.0)
    member = _member()

    async def enqueue_one(n: int) -> None:
        async with db.engine.begin() as conn:
            await enqueue(conn, db.outbox, db.topic, db.event(member, n))

    async with background(relay.run):
        await enqueue_one(1)
        await eventually(lambda: _all_sent(db, 1), timeout=60)
        # the session that holds the relay's advisory lock is the one that LISTENs
        killed = await _lock_holders(db)
        assert len(killed) == 1
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed[0]})
            await conn.commit()

        # the relay starts over on a new session: lock and LISTEN again
        await eventually(lambda: _lock_moved(db, killed[0]), timeout=60)
        await enqueue_one(2)
        await eventually(lambda: _all_sent(db, 2), timeout=60)
        await eventually(lambda: _relay_idle(db), timeout=60)
        await enqueue_one(3)  # the relay is idle in its loop now: woken by NOTIFY only
        await eventually(lambda: _all_sent(db, 3), timeout=60)
    assert relay.failures >= 1
    records = await db.read(db.topic, 3)
    assert [CloudEvent.from_json_bytes(r.value).data["n"] for r in records] == [1, 2, 3]


async def _relay_idle(db: Any) -> bool:
    async with db.engine.connect() as conn:
        idle = await conn.scalar(text("SELECT idle FROM outbox_relay_state WHERE id = 1"))
    return bool(idle)


async def _lock_holders(db: Any) -> list[int]:
    async with db.engine.connect() as conn:
        pids = (
            await conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                )
            )
        ).scalars()
        return [int(pid) for pid in pids]


async def _lock_moved(db: Any, old_pid: int) -> bool:
    holders = await _lock_holders(db)
    return len(holders) == 1 and holders[0] != old_pid


async def test_sent_rows_are_kept_for_the_retention_period_then_pruned(events_db: Any) -> None:
    db = events_db
    name = f"relay-{uuid.uuid4().hex[:8]}"
    member = _member()
    old, recent = db.event(member, 1), db.event(member, 2)
    async with db.engine.begin() as conn:
        await enqueue(conn, db.outbox, db.topic, old, recent)
    first = OutboxRelay(db.settings, db.engine, topics=[db.topic], name=name)
    async with background(first.run):
        await eventually(lambda: _all_sent(db, 2), timeout=60)
    # one row was sent long ago, beyond the 24 h retention; the other is recent
    async with db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE outbox SET sent_at = now() - interval '2 days' WHERE event_id = :id"),
            {"id": old.id},
        )
    pending = db.event(member, 3)
    second = OutboxRelay(
        db.with_settings(outbox_retention_hours=24.0), db.engine, topics=[db.topic], name=name
    )
    async with background(second.run):
        await eventually(lambda: _all_sent(db, 1), timeout=60)  # ``old`` is gone
        async with db.engine.begin() as conn:
            await enqueue(conn, db.outbox, db.topic, pending)
        rows = await eventually(lambda: _all_sent(db, 2), timeout=60)
    assert [r.event_id for r in rows] == [recent.id, pending.id]
    # the broker kept its data (same relay name, marker present): nothing was replayed
    assert second.replays == 0
