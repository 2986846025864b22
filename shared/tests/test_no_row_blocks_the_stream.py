"""Nothing one event does stops the stream: a row the broker refuses is parked, a transient
database failure is retried (never dead-lettered), a poison event is kept where ops can
replay it, and nothing about an erased member comes back (real Postgres, real broker)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared import dead_letters
from loyalty_shared.erasure import MEMBER_ERASED, member_hash
from loyalty_shared.events import CloudEvent, make_event
from loyalty_shared.inbox import EventConsumer
from loyalty_shared.outbox import OutboxRelay, enqueue
from loyalty_shared.testing import background, eventually
from loyalty_shared.topics import dlq_topic


def _member() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def _relay(db: Any) -> OutboxRelay:
    return OutboxRelay(db.settings, db.engine, topics=[db.topic], name=f"r-{uuid.uuid4().hex[:8]}")


def _consumer(db: Any, handlers: dict[str, Any] | None = None, **changes: Any) -> EventConsumer:
    settings = db.with_settings(**changes) if changes else db.settings
    return EventConsumer(
        settings,
        db.sessionmaker,
        topics=[db.topic],
        handlers=handlers or {db.event("x").type: db.count_effect},
        group_id=f"g-{uuid.uuid4().hex[:8]}",
    )


async def _rows(db: Any, sql: str, **params: Any) -> list[Any]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def test_a_row_too_large_for_the_broker_is_parked_and_the_next_events_are_delivered(
    events_db: Any,
) -> None:
    db = events_db
    member = _member()
    huge = make_event("loyalty/test", db.event("x").type, member, {"blob": "x" * 1_500_000})
    before = db.event(member, -1)
    after = [db.event(member, n) for n in range(3)]
    async with db.engine.begin() as conn:
        await enqueue(conn, db.outbox, db.topic, before)
    async with db.engine.begin() as conn:
        await enqueue(conn, db.outbox, db.topic, huge)
    async with db.engine.begin() as conn:
        await enqueue(conn, db.outbox, db.topic, *after)

    relay = _relay(db)
    async with background(relay.run):
        records = await db.read(db.topic, 4)
        parked = await eventually(
            lambda: _rows(db, "SELECT * FROM outbox_parked WHERE event_id = :e", e=huge.id),
            timeout=60,
        )
    delivered = [CloudEvent.from_json_bytes(r.value).id for r in sorted(records, key=_offset)]
    assert delivered == [before.id, *(e.id for e in after)]  # in order, the huge one aside
    assert parked[0].error_type == "MessageSizeTooLargeError"
    assert parked[0].status == "open"
    assert await _rows(db, "SELECT 1 FROM outbox WHERE event_id = :e", e=huge.id) == []
    assert relay.parked == 1

    # visible in the work list, then put back in the outbox by a replay
    async with db.engine.begin() as conn:
        items = await dead_letters.list_items(conn, db.settings.service_name)
        assert [i.event_id for i in items] == [huge.id]
        ref = items[0].ref
        assert ref.startswith(f"{db.settings.service_name}.parked.")
        assert (
            await dead_letters.replay(conn, db.settings.service_name, ref, actor="t", reason="x")
            is None
        )
    back = await _rows(db, "SELECT sent_at FROM outbox WHERE event_id = :e", e=huge.id)
    assert back and back[0].sent_at is None
    audit = await _rows(db, "SELECT action, actor FROM pipeline_actions")
    assert [(a.action, a.actor) for a in audit] == [("replay", "t")]


async def test_a_deadlock_in_a_handler_is_retried_not_dead_lettered(events_db: Any) -> None:
    db = events_db
    member = _member()
    event = db.event(member, 1)
    calls = 0

    async def deadlocks_twice(session: AsyncSession, ev: CloudEvent) -> None:
        nonlocal calls
        calls += 1
        if calls <= 4:  # more than consumer_max_attempts: only a retry without end gets past
            # a real deadlock_detected from Postgres (SQLSTATE 40P01)
            await session.execute(
                text("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$")
            )
        await db.count_effect(session, ev)

    await db.produce((member, event.to_json_bytes()))
    consumer = _consumer(db, {event.type: deadlocks_twice}, consumer_max_attempts=2)
    async with background(consumer.run):
        await eventually(lambda: _count(db, member, 1), timeout=60)
    assert consumer.stats.dead_lettered == 0
    assert consumer.stats.transient_retries >= 4
    assert await _rows(db, "SELECT 1 FROM dead_letters") == []


async def test_a_poison_event_is_kept_with_its_reason_and_a_replay_applies_it_once(
    events_db: Any,
) -> None:
    db = events_db
    member = _member()
    event = db.event(member, 1)
    fixed = False

    async def broken_until_fixed(session: AsyncSession, ev: CloudEvent) -> None:
        if not fixed:
            raise KeyError("points")  # the event's content does not fit the handler
        await db.count_effect(session, ev)

    await db.produce((member, event.to_json_bytes()))
    consumer = _consumer(db, {event.type: broken_until_fixed})
    async with background(consumer.run):
        kept = await eventually(lambda: _rows(db, "SELECT * FROM dead_letters"), timeout=60)
        dlq = await db.read(dlq_topic(db.topic), 1)
        assert kept[0].event_id == event.id
        assert kept[0].error_type == "KeyError"
        assert kept[0].attempts == db.settings.consumer_max_attempts
        assert dict(dlq[0].headers)["dlq-error-type"] == b"KeyError"

        fixed = True
        service = db.settings.service_name
        async with db.engine.begin() as conn:
            ref = (await dead_letters.list_items(conn, service))[0].ref
            replay = await dead_letters.replay(conn, service, ref, actor="ops", reason="fixed")
        assert replay is not None and replay.topic == db.topic
        await db.produce((member, replay.value))
        await db.produce((member, replay.value))  # replayed twice: applied once
        await eventually(lambda: _count(db, member, 1), timeout=60)
        await asyncio.sleep(0.5)
    assert await db.effects() == {member: 1}
    async with db.engine.begin() as conn:
        assert await dead_letters.list_items(conn, service) == []  # nothing open
        (done,) = await dead_letters.list_items(conn, service, status="all")
    assert done.status == "replayed"


async def test_events_about_an_erased_member_are_skipped_also_later_in_the_same_batch(
    events_db: Any,
) -> None:
    db = events_db
    member, other = _member(), _member()
    erased = make_event("loyalty/points", MEMBER_ERASED, member, {"member_id": member})
    await db.produce(
        (member, db.event(member, 1).to_json_bytes()),
        (member, erased.to_json_bytes()),
        (member, db.event(member, 2).to_json_bytes()),  # late: after the erasure
        (other, db.event(other, 1).to_json_bytes()),
    )
    # what this service's own pipeline holds about the member: an event it published, an
    # event it dead-lettered
    async with db.engine.begin() as conn:
        await enqueue(conn, db.outbox, db.topic, db.event(member, 9), db.event(other, 9))
        await conn.execute(
            text(
                "INSERT INTO dead_letters (consumer_group, topic, kafka_partition, "
                "kafka_offset, key, value, error, error_type, attempts) "
                "VALUES ('g', 't', 0, 1, :m, 'x', 'e', 'E', 3)"
            ),
            {"m": member},
        )
    consumer = _consumer(db)
    async with background(consumer.run):
        await eventually(lambda: _count(db, other, 1), timeout=60)
        await eventually(lambda: consumer.stats.erased_skipped >= 1, timeout=60)
    assert (await db.effects())[member] == 1  # the event before the erasure only
    assert [r.key for r in await db.outbox_rows()] == [other]
    assert await _rows(db, "SELECT 1 FROM dead_letters WHERE key = :m", m=member) == []
    tombstones = await _rows(db, "SELECT member_hash FROM erased_members")
    assert [t.member_hash for t in tombstones] == [member_hash(db.settings.erasure_key(), member)]
    assert member not in str(tombstones)

    # a redelivery or a replay much later changes nothing either
    await db.produce((member, db.event(member, 3).to_json_bytes()))
    again = _consumer(db)
    async with background(again.run):
        await eventually(lambda: again.stats.erased_skipped >= 1, timeout=60)
    assert (await db.effects())[member] == 1


def _offset(record: Any) -> int:
    return int(record.offset)


async def _count(db: Any, member: str, n: int) -> bool:
    return (await db.effects()).get(member) == n
