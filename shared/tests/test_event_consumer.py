"""The idempotent consumer against real Postgres and the real broker (own database, topic)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import structlog
from aiokafka.partitioner import murmur2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from loyalty_shared import inbox
from loyalty_shared.contracts.points import TierChangedV1
from loyalty_shared.events import CloudEvent, make_event
from loyalty_shared.inbox import EventConsumer
from loyalty_shared.kafka import ensure_topics
from loyalty_shared.testing import background, eventually
from loyalty_shared.topics import dlq_topic

FAILING = "loyalty.test.failing.v1"


def _consumer(
    db: Any,
    handlers: dict[str, Any] | None = None,
    group_id: str | None = None,
    **changes: Any,
) -> EventConsumer:
    settings = db.with_settings(**changes) if changes else db.settings
    return EventConsumer(
        settings,
        db.sessionmaker,
        topics=[db.topic],
        handlers=handlers or {db.event("x").type: db.count_effect},
        group_id=group_id or f"g-{uuid.uuid4().hex[:8]}",
    )


def _member() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


async def test_the_same_event_twice_changes_state_once(events_db: Any) -> None:
    db = events_db
    member = _member()
    first = db.event(member, 1)
    second = db.event(member, 2)
    # same key, same partition: the duplicate is read before ``second``
    await db.produce(
        (member, first.to_json_bytes()),
        (member, first.to_json_bytes()),
        (member, second.to_json_bytes()),
    )
    consumer = _consumer(db)
    async with background(consumer.run):
        await eventually(lambda: _effect_is(db, member, 2), timeout=60)
    assert await db.effects() == {member: 2}
    assert sorted(await db.inbox_ids()) == sorted([first.id, second.id])
    assert consumer.stats.duplicates == 1


async def test_a_failing_handler_rolls_back_and_commits_no_offset_a_new_consumer_resumes(
    events_db: Any,
) -> None:
    db = events_db
    member = _member()
    event = db.event(member, 1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    calls = 0

    async def writes_then_fails(session: AsyncSession, ev: CloudEvent) -> None:
        nonlocal calls
        calls += 1
        await db.count_effect(session, ev)  # the effect is written ...
        raise RuntimeError("downstream rule broke")  # ... and rolled back with the inbox row

    await db.produce((member, event.to_json_bytes()))
    # so many attempts that it is still retrying when it is stopped
    broken = _consumer(
        db, {event.type: writes_then_fails}, group_id=group, consumer_max_attempts=1_000_000
    )
    async with background(broken.run):
        await eventually(lambda: calls >= 3, timeout=60)
        assert await db.effects() == {}
        assert await db.inbox_ids() == []
    assert await db.committed(group) == {}  # nothing committed: the event is still pending
    assert broken.stats.dead_lettered == 0

    fixed = _consumer(db, group_id=group)
    async with background(fixed.run):
        await eventually(lambda: _effect_is(db, member, 1), timeout=60)
        # the offset is committed once the effect is in the database
        await eventually(lambda: _committed_total(db, group, 1), timeout=60)
    assert await db.inbox_ids() == [event.id]


async def test_poison_message_is_dead_lettered_and_the_partition_moves_on(events_db: Any) -> None:
    db = events_db
    member = _member()
    good = db.event(member, 1)
    await db.produce((member, b"this is not json {"), (member, good.to_json_bytes()))
    consumer = _consumer(db)
    async with background(consumer.run):
        await eventually(lambda: _effect_is(db, member, 1), timeout=60)
        dead = await db.read(dlq_topic(db.topic), 1)
    assert len(dead) == 1
    assert dead[0].value == b"this is not json {"
    assert dead[0].key == member.encode()
    headers = dict(dead[0].headers)
    assert b"not a CloudEvents envelope" in headers["dlq-error"]
    assert headers["dlq-error-type"] == b"PoisonMessage"
    assert headers["dlq-original-topic"] == db.topic.encode()
    assert consumer.stats.dead_lettered == 1


async def test_handler_that_always_fails_is_retried_then_dead_lettered_and_partition_moves_on(
    events_db: Any,
) -> None:
    db = events_db
    member = _member()
    calls = 0

    async def always_fails(session: AsyncSession, event: CloudEvent) -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"cannot apply {event.id}")

    bad = make_event("loyalty/test", FAILING, member, {})
    good = db.event(member, 1)
    await db.produce((member, bad.to_json_bytes()), (member, good.to_json_bytes()))
    consumer = _consumer(
        db,
        {FAILING: always_fails, good.type: db.count_effect},
        consumer_max_attempts=3,
    )
    group = consumer.group_id
    async with background(consumer.run):
        await eventually(lambda: _effect_is(db, member, 1), timeout=60)
        dead = await db.read(dlq_topic(db.topic), 1)
        await eventually(lambda: _committed_total(db, group, 2), timeout=60)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert CloudEvent.from_json_bytes(dead[0].value).id == bad.id
    assert headers["dlq-attempts"] == b"3"
    assert headers["dlq-error"] == f"ValueError: cannot apply {bad.id}".encode()
    assert headers["dlq-consumer-group"] == group.encode()
    # at least the three attempts (the batch it first ran in may add one)
    assert 3 <= calls <= 4
    assert await db.inbox_ids() == [good.id]


async def test_a_payload_its_contract_cannot_read_is_dead_lettered_at_once_with_the_reason(
    events_db: Any,
) -> None:
    """A ``tier.changed`` without ``to_tier`` never becomes readable: one attempt, not three,
    and the dead letter names the missing field; the good event behind it is applied."""
    db = events_db
    member = _member()
    calls = 0

    async def reads_the_tier(session: AsyncSession, event: CloudEvent) -> None:
        nonlocal calls
        calls += 1
        TierChangedV1.of(event)

    valid = TierChangedV1.model_validate(TierChangedV1.EXAMPLE).model_dump(mode="json")
    bad = make_event(
        TierChangedV1.SOURCE,
        TierChangedV1.TYPE,
        member,
        {k: v for k, v in valid.items() if k != "to_tier"} | {"unknown_field": "tolerated"},
    )
    good = db.event(member, 1)
    await db.produce((member, bad.to_json_bytes()), (member, good.to_json_bytes()))
    consumer = _consumer(
        db,
        {TierChangedV1.TYPE: reads_the_tier, good.type: db.count_effect},
        consumer_max_attempts=5,
    )
    async with background(consumer.run):
        await eventually(lambda: _effect_is(db, member, 1), timeout=60)
        dead = await db.read(dlq_topic(db.topic), 1)
    headers = dict(dead[0].headers)
    assert CloudEvent.from_json_bytes(dead[0].value).id == bad.id
    assert headers["dlq-attempts"] == b"1"
    assert headers["dlq-error-type"] == b"InvalidPayload"
    assert b"to_tier: Field required" in headers["dlq-error"]
    assert b"unknown_field" not in headers["dlq-error"]
    assert calls <= 2  # its batch, then once on its own
    assert await db.inbox_ids() == [good.id]


async def test_consumer_rereads_when_the_broker_lost_its_offsets(
    events_db: Any, restart_broker: Any
) -> None:
    db = events_db
    member = _member()  # one key: everything on one partition, offsets climb
    before = [db.event(member, n) for n in range(6)]
    after = [db.event(member, 100 + n) for n in range(9)]
    consumer = _consumer(db)
    async with background(consumer.run):
        await db.produce(*((member, e.to_json_bytes()) for e in before))
        await eventually(lambda: _effect_is(db, member, len(before)), timeout=60)
        await eventually(lambda: _committed_total(db, consumer.group_id, len(before)), timeout=60)

        await restart_broker()
        # the new broker is empty: no topic, no group offsets. New events arrive at
        # offsets 0.. below the position the consumer had reached.
        await ensure_topics(db.settings, [db.topic, dlq_topic(db.topic)])
        await db.produce(*((member, e.to_json_bytes()) for e in after))
        await eventually(lambda: _effect_is(db, member, len(before) + len(after)), timeout=120)
    assert sorted(await db.inbox_ids()) == sorted(e.id for e in [*before, *after])


def _members_on_every_partition(partitions: int, per_partition: int) -> list[str]:
    """Member ids whose keys land on every partition, so each consumer of a group gets work."""
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    while any(len(ms) < per_partition for ms in found.values()):
        member = _member()
        partition = (murmur2(member.encode()) & 0x7FFFFFFF) % partitions
        if len(found[partition]) < per_partition:
            found[partition].append(member)
    return [m for ms in found.values() for m in ms]


async def _effect_is(db: Any, key: str, expected: int) -> bool:
    return bool((await db.effects()).get(key) == expected)


async def _committed_total(db: Any, group: str, expected: int) -> bool:
    return bool(sum((await db.committed(group)).values()) == expected)


async def test_two_consumers_in_one_group_share_partitions_and_rebalance_without_loss(
    events_db: Any,
) -> None:
    db = events_db
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = _members_on_every_partition(db.settings.kafka_topic_partitions, per_partition=2)
    first, second = _consumer(db, group_id=group), _consumer(db, group_id=group)
    produced: list[CloudEvent] = []

    async def produce_round(n: int) -> None:
        events = [db.event(m, n) for m in members]
        produced.extend(events)
        await db.produce(*((e.subject, e.to_json_bytes()) for e in events))

    async def total() -> int:
        return sum((await db.effects()).values())

    async def total_is(expected: int) -> bool:
        return await total() == expected

    async with background(first.run):
        await produce_round(0)
        await eventually(lambda: total_is(len(produced)), timeout=60)
        async with background(second.run):
            # the group rebalances: ``second`` takes some of ``first``'s partitions

            async def second_took_partitions() -> bool:
                if second.stats.processed > 0:
                    return True
                await produce_round(len(produced))  # more work until ``second`` gets some
                return False

            await eventually(second_took_partitions, timeout=90, interval=1.0)
            await eventually(lambda: total_is(len(produced)), timeout=60)
        # ``second`` left: ``first`` gets every partition back
        await produce_round(99)
        await eventually(lambda: total_is(len(produced)), timeout=90)

    assert await db.effects() == {m: len(produced) // len(members) for m in members}
    assert sorted(await db.inbox_ids()) == sorted(e.id for e in produced)
    assert first.stats.processed + second.stats.processed == len(produced)


async def test_infrastructure_errors_are_retried_without_end_and_never_dead_lettered(
    events_db: Any,
) -> None:
    db = events_db
    member = _member()
    calls = 0

    async def database_flaps(session: AsyncSession, event: CloudEvent) -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:  # more failures than the attempts allowed for a bad message
            raise ConnectionError("connection to the database was lost")
        await db.count_effect(session, event)

    event = db.event(member, 1)
    await db.produce((member, event.to_json_bytes()))
    consumer = _consumer(db, {event.type: database_flaps}, consumer_max_attempts=2)
    async with background(consumer.run):
        await eventually(lambda: _effect_is(db, member, 1), timeout=60)
    assert calls == 6
    assert consumer.stats.dead_lettered == 0
    assert await db.inbox_ids() == [event.id]


async def test_an_event_that_fails_once_the_database_is_back_is_dead_lettered_with_its_record(
    events_db: Any,
) -> None:
    db = events_db
    member = _member()
    bad = make_event("loyalty/test", FAILING, member, {})
    good = db.event(member, 1)
    calls = 0

    async def outage_then_bug(session: AsyncSession, event: CloudEvent) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("connection to the database was lost")
        raise ValueError("a rule that cannot apply this event")

    await db.produce((member, bad.to_json_bytes()), (member, good.to_json_bytes()))
    consumer = _consumer(
        db, {FAILING: outage_then_bug, good.type: db.count_effect}, consumer_max_attempts=2
    )
    async with background(consumer.run):
        await eventually(lambda: _effect_is(db, member, 1), timeout=60)
        dead = await db.read(dlq_topic(db.topic), 1)
    assert [CloudEvent.from_json_bytes(r.value).id for r in dead] == [bad.id]
    headers = dict(dead[0].headers)
    assert headers["dlq-error"] == b"ValueError: a rule that cannot apply this event"
    assert headers["dlq-attempts"] == b"2"
    assert await db.inbox_ids() == [good.id]


async def test_concurrent_transactions_keep_each_members_events_in_order(events_db: Any) -> None:
    """With consumer_concurrency 2, a poll is applied in two transactions at once, each
    for whole partition numbers: every member's events still run once each, in order."""
    db = events_db
    members = [_member() for _ in range(12)]
    seen: list[tuple[str, int, int]] = []  # member, effect count before, event's n

    async def in_order(session: AsyncSession, ev: CloudEvent) -> None:
        before = (
            await session.execute(
                text("SELECT count FROM effects WHERE key = :k"), {"k": ev.subject}
            )
        ).scalar_one_or_none()
        seen.append((str(ev.subject), before or 0, int(ev.data["n"])))
        await db.count_effect(session, ev)

    class Tracking(EventConsumer):
        lane_safe = True  # class-wide counters only, nothing of a batch
        in_flight = 0
        most = 0

        async def apply_fresh(self, session: AsyncSession, events: list[CloudEvent]) -> int:
            Tracking.in_flight += 1
            Tracking.most = max(Tracking.most, Tracking.in_flight)
            try:
                await asyncio.sleep(0.05)  # long enough for the other lane to start
                return await super().apply_fresh(session, events)
            finally:
                Tracking.in_flight -= 1

    await db.produce(*((m, db.event(m, n).to_json_bytes()) for n in range(1, 6) for m in members))
    settings = db.with_settings(consumer_concurrency=2, consumer_batch_size=4)
    consumer = Tracking(
        settings,
        db.sessionmaker,
        topics=[db.topic],
        handlers={db.event("x").type: in_order},
        group_id=f"g-{uuid.uuid4().hex[:8]}",
    )
    async with background(consumer.run):
        await eventually(lambda: _all_at(db, members, 5), timeout=60)
    assert Tracking.most == 2  # the lanes did run at once
    assert await db.effects() == dict.fromkeys(members, 5)
    assert len(seen) == len(members) * 5
    assert [(m, b, n) for m, b, n in seen if b != n - 1] == []  # each after the one before


async def test_lanes_over_topics_of_different_partition_counts_warn_at_assignment(
    events_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member's events of two topics stay in one lane only if the topics have the same
    partition count: a consumer in lanes over topics that do not says so, once."""
    db = events_db
    fewer = f"{db.topic}.fewer"  # 2 partitions; the test's topic has 3
    same = f"{db.topic}.same"
    await ensure_topics(db.with_settings(kafka_topic_partitions=2), [fewer])
    await ensure_topics(db.settings, [same])
    # a logger first used inside capture_logs (the module's may be cached, configured)
    monkeypatch.setattr(inbox, "log", structlog.get_logger("loyalty.inbox"))

    async def warnings_when_assigned(topics: list[str], lanes: int) -> list[dict[str, Any]]:
        consumer = _consumer(db, consumer_concurrency=lanes)
        consumer.topics = topics
        with capture_logs() as logs:
            async with background(consumer.run):
                await eventually(
                    lambda: any(e["event"] == "partitions_assigned" for e in logs), timeout=60
                )
        return [e for e in logs if e["event"] == "consumer_lanes_partition_counts_differ"]

    [warned] = await warnings_when_assigned([db.topic, fewer], 2)
    assert warned["log_level"] == "warning"
    assert warned["partitions"] == {db.topic: 3, fewer: 2} and warned["lanes"] == 2
    assert await warnings_when_assigned([db.topic, same], 2) == []
    assert await warnings_when_assigned([db.topic, fewer], 1) == []  # one lane: in order


async def _all_at(db: Any, members: list[str], n: int) -> bool:
    effects = await db.effects()
    return all(effects.get(m) == n for m in members)
