"""Live tags and segments in the batched consumer: one evaluation per batch, each change once."""

import asyncio
import random
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from loyalty_shared.events import CloudEvent
from segmentation.conditions.language import parse
from segmentation.segments.live import _live_plan, refresh_members
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, erased, interaction, member_id, order

ONE_TIMERS = "order_count = 1"
BIG_APP = 'tags contains "big" and channels contains "app"'


async def _segments(env: FreshSegmentation) -> tuple[str, str]:
    tag = await env.client.post(
        "/v1/tags", json={"name": "big", "kind": "rule", "condition": "total_spend > 100"}
    )
    assert tag.status_code == 201, tag.text
    ids = []
    for name, condition in (("one timers", ONE_TIMERS), ("big app", BIG_APP)):
        created = await env.client.post("/v1/segments", json={"name": name, "condition": condition})
        assert created.status_code == 201, created.text
        ids.append(created.json()["segment_id"])
    return ids[0], ids[1]


History = tuple[str, str, str, str]  # segment_id, member_id, action, trigger


@dataclass
class State:
    memberships: set[tuple[str, str]]
    history: list[History]
    reasons: list[Any]
    events: list[tuple[str, str, dict[str, Any]]]
    counts: dict[str, tuple[int, int]]  # segment_id -> (member_count, actual members)


async def _state(env: FreshSegmentation, members: list[str]) -> State:
    """Memberships, history and outbox events of these members, as sets/lists to compare."""
    memberships = await env.sql(
        "SELECT segment_id, member_id FROM segment_members WHERE member_id = ANY(:m)", m=members
    )
    history = await env.sql(
        "SELECT segment_id, member_id, action, trigger, reason FROM segment_history "
        "WHERE member_id = ANY(:m) ORDER BY id",
        m=members,
    )
    outbox = await env.sql(
        "SELECT event_type, key, payload FROM outbox "
        "WHERE event_type LIKE 'loyalty.segment.%' AND key = ANY(:m) ORDER BY id",
        m=members,
    )
    counts = await env.sql(
        "SELECT s.segment_id, s.member_count, "
        "(SELECT count(*) FROM segment_members m WHERE m.segment_id = s.segment_id) "
        "FROM segments s"
    )
    return State(
        memberships={(r[0], r[1]) for r in memberships},
        history=[(r[0], r[1], r[2], r[3]) for r in history],
        reasons=[r[4] for r in history],
        events=[(r[0], r[1], r[2]) for r in outbox],
        counts={r[0]: (r[1], r[2]) for r in counts},
    )


async def test_a_batch_writes_each_membership_change_once(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    one, big_app = await _segments(env)
    a, b, c = member_id(), member_id(), member_id()
    members = [a, b, c]
    first_a = order(a, "2025-01-01", "20.00")
    # b orders twice within the batch: it is never a one-timer at the end of a batch
    batch = [
        enrolled(a),
        first_a,
        first_a,  # the same event twice in one batch runs once
        order(b, "2025-01-01", "20.00"),
        order(b, "2025-01-02", "20.00"),
        order(c, "2025-01-01", "30.00", channel="app"),
        interaction(c, "login", "2025-01-03"),
    ]
    await env.feed(*batch)
    state = await _state(env, members)
    assert state.memberships == {(one, a), (one, c)}
    assert sorted(state.history) == sorted(
        [
            (one, a, "entered", "loyalty.order.recorded.v1"),
            (one, c, "entered", "loyalty.order.recorded.v1"),
        ]
    )
    assert state.reasons == [{"clauses": {ONE_TIMERS: True}}] * 2
    assert state.counts[one] == (2, 2) and state.counts[big_app] == (0, 0)

    # the same batch again (a redelivery): nothing changes, nothing is written twice
    await env.feed(*batch)
    assert await _state(env, members) == state

    # next batch: a orders again (leaves one timers); c spends 200 in the app: the rule
    # tag "big" follows, and with it c enters "big app" and leaves "one timers"
    await env.feed(order(a, "2025-02-01", "20.00"), order(c, "2025-02-01", "200.00"))
    state = await _state(env, members)
    assert state.memberships == {(big_app, c)}
    changes = sorted(state.history[2:])
    assert changes == sorted(
        [
            (one, a, "left", "loyalty.order.recorded.v1"),
            (one, c, "left", "loyalty.order.recorded.v1"),
            (big_app, c, "entered", "loyalty.order.recorded.v1"),
        ]
    )
    assert state.counts[one] == (0, 0) and state.counts[big_app] == (1, 1)
    reasons = dict(zip(state.history, state.reasons, strict=True))
    assert reasons[(big_app, c, "entered", "loyalty.order.recorded.v1")] == {
        "clauses": {'tags contains "big"': True, 'channels contains "app"': True}
    }
    profile = (await env.client.get(f"/v1/profiles/{c}")).json()
    assert profile["rule_tags"] == ["big"]

    # one outbox event per history row, same member, type and segment, a valid envelope
    history = state.history
    events = state.events
    assert len(events) == len(history) == 5
    for (segment_id, member, action, trigger), (type_, key, payload) in zip(
        sorted(history, key=lambda h: (h[1], h[0], h[2])),
        sorted(events, key=lambda e: (e[1], e[2]["data"]["segment_id"], e[0])),
        strict=True,
    ):
        assert key == member and type_ == f"loyalty.segment.{action}.v1"
        event = CloudEvent.model_validate(payload)
        assert event.type == type_ and event.subject == member
        assert event.data["segment_id"] == segment_id and event.data["member_id"] == member
        assert event.data["trigger"] == trigger and event.data["segment_name"]
    # event ids numbered from one UUIDv7 per statement: distinct, version 7, the outbox
    # row's event_id and the envelope's id
    rows = await env.sql(
        "SELECT event_id, payload->>'id' FROM outbox WHERE event_type LIKE 'loyalty.segment.%' "
        "AND key = ANY(:m) ORDER BY id",
        m=members,
    )
    ids = [uuid.UUID(r[0]) for r in rows]
    assert [str(i) for i in ids] == [r[0] for r in rows] == [r[1] for r in rows]
    assert len(set(ids)) == len(ids) == 5 and {i.version for i in ids} == {7}


async def test_an_erasure_in_a_batch_comes_after_the_batch_s_earlier_orders(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    one, _ = await _segments(env)
    gone, stays = member_id(), member_id()
    await env.feed(
        enrolled(gone),
        order(gone, "2025-01-01", "20.00"),
        order(stays, "2025-01-01", "20.00"),
        erased(gone),
    )
    assert (await env.client.get(f"/v1/profiles/{gone}")).status_code == 404
    state = await _state(env, [gone, stays])
    assert state.memberships == {(one, stays)}
    assert state.history == [(one, stays, "entered", "loyalty.order.recorded.v1")]
    assert state.counts[one] == (1, 1)
    # the erased member's order is kept for the aggregates, under a pseudonym
    kept = await env.sql(
        "SELECT count(*) FROM member_orders WHERE member_id LIKE 'erased-%' AND amount = 20"
    )
    assert kept[0][0] == 1


@pytest.mark.parametrize("literal", ["gold:vip", "a::b :c", "x\\\\:y", "it's"])
def test_live_statements_keep_condition_literals_verbatim(literal: str) -> None:
    """The live statements inline the conditions' literals: a colon is no parameter."""
    condition = f'tier = "{literal}"'
    plan = _live_plan((), False, (("seg_x", "x", condition),))
    assert plan.segments is not None
    rendered = str(plan.segments.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    value = parse(condition).value  # type: ignore[union-attr]
    assert "profiles.tier = '" + str(value).replace("'", "''") + "'" in rendered


async def test_refreshes_at_once_share_segments_without_losing_counts(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """The consumer runs transactions at once (``consumer_concurrency``): refreshes of
    different members entering and leaving the same segments wait for each other on those
    segments' rows (locked in one order), and every count stays true."""
    env = fresh_segmentation
    for k in range(1, 7):
        made = await env.client.post(
            "/v1/segments", json={"name": f"at least {k}", "condition": f"order_count >= {k}"}
        )
        assert made.status_code == 201, made.text
    lanes = [[member_id() for _ in range(40)] for _ in range(2)]
    sessionmaker = env.app.state.sessionmaker
    rng = random.Random(7)

    async def refresh(members: list[str]) -> None:
        async with sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO profiles (member_id, order_count) "
                    "SELECT unnest(CAST(:m AS text[])), unnest(CAST(:n AS int[])) "
                    "ON CONFLICT (member_id) DO UPDATE SET order_count = excluded.order_count"
                ),
                {"m": members, "n": [rng.randint(0, 7) for _ in members]},
            )
            await refresh_members(session, members, "loyalty.order.recorded.v1")

    for round_ in range(8):
        # opposite member orders: without one lock order, the two would meet crosswise
        await asyncio.gather(refresh(lanes[0]), refresh(lanes[1][:: -1 if round_ % 2 else 1]))
    counts = await env.sql(
        "SELECT s.member_count, (SELECT count(*) FROM segment_members m "
        "WHERE m.segment_id = s.segment_id) FROM segments s"
    )
    assert len(counts) == 6 and all(kept == actual for kept, actual in counts)
