"""Events from points and segmentation, over the real broker: tier projection -> shorter SLA
clocks, value tier, proactive churn-risk follow-ups, monthly high-value follow-ups."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from feedback.testing import IsolatedFeedback
from feedback.worker import PeriodicJobs, build_consumer, run_periodic_jobs
from loyalty_shared.contracts import EventPayload
from loyalty_shared.contracts.points import (
    MemberErasedV1,
    OrderRecordedV1,
    OrderRefundedV1,
    TierChangedV1,
)
from loyalty_shared.contracts.segmentation import (
    ChurnRiskChangedV1,
    LifecycleChangedV1,
    SegmentEnteredV1,
    ValueTierChangedV1,
)
from loyalty_shared.kafka import ensure_topics, make_producer
from loyalty_shared.outbox import OutboxRelay
from loyalty_shared.testing import background, eventually
from loyalty_shared.topics import FEEDBACK_EVENTS, POINTS_EVENTS, SEGMENTATION_EVENTS

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def member() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
async def consuming(isolated_feedback: IsolatedFeedback):  # type: ignore[no-untyped-def]
    """The feedback consumer (its own group) on the isolated database, and a producer."""
    fb = isolated_feedback
    await ensure_topics(fb.settings, [POINTS_EVENTS, SEGMENTATION_EVENTS, FEEDBACK_EVENTS])
    consumer = build_consumer(
        fb.settings, fb.sessionmaker, group_id=f"feedback-test-{uuid.uuid4().hex[:8]}"
    )
    producer = make_producer(fb.settings, client_id="feedback-test-producer")
    await producer.start()

    async def send(model: type[EventPayload], member_id: str, **data: Any) -> str:
        """An event of ``model`` (its example with ``data``) about ``member_id``, on its topic."""
        kw = {k: data.pop(k) for k in ("event_id", "time") if k in data}
        event = model.sample(member_id=member_id, **data).event(member_id, **kw)
        await producer.send_and_wait(model.TOPIC, event.to_json_bytes(), key=member_id.encode())
        return event.id

    async with background(consumer.run):
        yield send
    await producer.stop()


async def projected(fb: IsolatedFeedback, member_id: str, **expected: Any) -> dict[str, Any] | None:
    body = (await fb.client.get(f"/v1/feedback/members/{member_id}")).json()
    return body if all(body[k] == v for k, v in expected.items()) else None


async def test_tier_change_gives_shorter_clocks(  # type: ignore[no-untyped-def]
    isolated_feedback: IsolatedFeedback, consuming
) -> None:
    fb, send = isolated_feedback, consuming
    m = member()
    fb.clock.set(T0)
    before = await fb.client.post(
        "/v1/complaints",
        json={"member_id": m, "channel": "app", "category": "x", "description": "y"},
    )
    assert before.json()["member_tier"] is None
    await send(TierChangedV1, m, from_tier="gold", to_tier="diamond")
    await eventually(lambda: projected(fb, m, tier="diamond"))
    after = (
        await fb.client.post(
            "/v1/complaints",
            json={"member_id": m, "channel": "app", "category": "x", "description": "y"},
        )
    ).json()
    assert after["member_tier"] == "diamond"
    assert "tier-diamond" in after["sla"]["policy_ids"]
    assert datetime.fromisoformat(after["first_response_due_at"]) == T0 + timedelta(hours=4)
    assert datetime.fromisoformat(after["resolution_due_at"]) == T0 + timedelta(hours=24)
    # the earlier complaint keeps the clocks it was opened under
    assert before.json()["first_response_due_at"] != after["first_response_due_at"]

    # an older tier event arriving late does not roll the projection back
    await send(TierChangedV1, m, to_tier="silver", time=datetime.now(UTC) - timedelta(days=30))
    marker = member()
    await send(TierChangedV1, marker, to_tier="gold")
    await eventually(lambda: projected(fb, marker, tier="gold"))  # the late one was processed
    assert await projected(fb, m, tier="diamond")


async def test_value_tier_and_churn_risk_follow_up(  # type: ignore[no-untyped-def]
    isolated_feedback: IsolatedFeedback, consuming
) -> None:
    fb, send = isolated_feedback, consuming
    high, low = member(), member()
    await send(ValueTierChangedV1, high, to_value_tier="high")
    await send(ValueTierChangedV1, low, to_value_tier="low")
    await eventually(lambda: projected(fb, high, value_tier="high"))
    await eventually(lambda: projected(fb, low, value_tier="low"))
    fb.clock.set(T0)
    complaint = (
        await fb.client.post(
            "/v1/complaints",
            json={"member_id": high, "channel": "web", "category": "x", "description": "y"},
        )
    ).json()
    assert "value-high" in complaint["sla"]["policy_ids"]
    assert datetime.fromisoformat(complaint["first_response_due_at"]) == T0 + timedelta(hours=4)

    # as segmentation publishes it: a segment id and the name ops gave the segment
    entered = {"segment_id": str(uuid.uuid4()), "segment_name": "Churn risk", "trigger": "event"}
    event_id = await send(SegmentEnteredV1, high, **entered)
    await send(SegmentEnteredV1, low, **entered)
    # redelivery of the same event id changes nothing
    await send(SegmentEnteredV1, high, **entered, event_id=event_id)

    async def follow_ups(m: str) -> list[dict[str, Any]]:
        page = await fb.client.get("/v1/follow-ups", params={"member_id": m})
        items: list[dict[str, Any]] = page.json()["items"]
        return items

    items = await eventually(lambda: follow_ups(high))
    assert [f["reason"] for f in items] == ["churn_risk"]
    assert items[0]["status"] == "pending"
    marker = member()
    await send(SegmentEnteredV1, marker, segment_id="vip", segment_name="VIP")
    await send(ValueTierChangedV1, marker, to_value_tier="low")
    await eventually(lambda: projected(fb, marker, value_tier="low"))
    assert await follow_ups(low) == []  # not high value: no proactive visit
    assert len(await follow_ups(high)) == 1


async def test_monthly_follow_up_for_high_value_members(  # type: ignore[no-untyped-def]
    isolated_feedback: IsolatedFeedback, consuming
) -> None:
    fb, send = isolated_feedback, consuming
    vip = member()
    await send(TierChangedV1, vip, to_tier="diamond")
    await eventually(lambda: projected(fb, vip, tier="diamond"))
    october = datetime(2026, 10, 15, tzinfo=UTC)
    await run_periodic_jobs(fb.settings, fb.sessionmaker, october)
    await run_periodic_jobs(fb.settings, fb.sessionmaker, october + timedelta(days=1))
    await run_periodic_jobs(fb.settings, fb.sessionmaker, datetime(2026, 11, 2, tzinfo=UTC))
    page = (
        await fb.client.get(
            "/v1/follow-ups", params={"member_id": vip, "reason": "monthly_high_value"}
        )
    ).json()
    dues = [f["due_at"] for f in page["items"]]
    assert len(dues) == 2  # one for October, one for November
    assert dues[0].startswith("2026-10-31T23:59:59")
    assert dues[1].startswith("2026-11-30T23:59:59")


async def test_lifecycle_churn_risk_and_a_high_churn_risk_level_bring_a_visit(  # type: ignore[no-untyped-def]
    isolated_feedback: IsolatedFeedback, consuming
) -> None:
    """For a high-value member: a lifecycle stage of churn-risk, and a churn-risk level of
    high, each bring one proactive visit; a value tier that drops to low is projected as of
    its recompute, and a late event of an older recompute changes nothing."""
    fb, send = isolated_feedback, consuming
    m, other = member(), member()
    await send(ValueTierChangedV1, m, to_value_tier="high", as_of="2026-09-01T02:00:00+00:00")
    await eventually(lambda: projected(fb, m, value_tier="high"))
    await send(LifecycleChangedV1, m, from_stage="mature", to_stage="churn-risk")
    await send(ChurnRiskChangedV1, m, from_churn_risk="medium", to_churn_risk="high")
    await send(ChurnRiskChangedV1, other, from_churn_risk="medium", to_churn_risk="high")

    async def churn_follow_ups(who: str, n: int) -> list[dict[str, Any]] | None:
        page = await fb.client.get(
            "/v1/follow-ups", params={"member_id": who, "reason": "churn_risk"}
        )
        items = page.json()["items"]
        return items if len(items) >= n else None

    assert len(await eventually(lambda: churn_follow_ups(m, 2))) == 2
    await send(ValueTierChangedV1, m, to_value_tier="low", as_of="2026-10-01T02:00:00+00:00")
    await send(ValueTierChangedV1, m, to_value_tier="high", as_of="2026-08-01T02:00:00+00:00")
    marker = member()
    await send(ValueTierChangedV1, marker, to_value_tier="medium")
    await eventually(lambda: projected(fb, marker, value_tier="medium"))
    assert await projected(fb, m, value_tier="low")
    assert await churn_follow_ups(other, 0) == []  # not high value: no visit


async def test_worker_publishes_breach_to_the_topic(  # type: ignore[no-untyped-def]
    isolated_feedback: IsolatedFeedback, consuming
) -> None:
    """The worker's periodic job (real time) finds an overdue clock; the relay publishes it."""
    fb = isolated_feedback
    fb.clock.set(datetime.now(UTC) - timedelta(days=3))  # opened 3 days ago: first response late
    c = (
        await fb.client.post(
            "/v1/complaints",
            json={"member_id": member(), "channel": "email", "category": "x", "description": "y"},
        )
    ).json()
    settings = fb.settings.model_copy(update={"breach_check_seconds": 0.2})
    reader = AIOKafkaConsumer(
        FEEDBACK_EVENTS,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    seen: list[dict[str, Any]] = []

    async def breach_on_topic() -> dict[str, Any] | None:
        batches = await reader.getmany(timeout_ms=200)
        for records in batches.values():
            seen.extend(json.loads(r.value) for r in records)
        return next(
            (
                e
                for e in seen
                if e["type"] == "loyalty.complaint.sla_breached.v1"
                and e["data"]["complaint_id"] == c["id"]
            ),
            None,
        )

    relay = OutboxRelay(settings, fb.engine, topics=[FEEDBACK_EVENTS])
    try:
        async with background(relay.run, PeriodicJobs(settings, fb.sessionmaker).run):
            event = await eventually(breach_on_topic, timeout=20)
    finally:
        await reader.stop()
    assert event["subject"] == c["member_id"]
    assert event["data"]["clock"] == "first_response"
    body = (await fb.client.get(f"/v1/complaints/{c['id']}")).json()
    assert body["breached"] is True


async def test_export_then_erasure_on_member_erased(  # type: ignore[no-untyped-def]
    isolated_feedback: IsolatedFeedback, consuming
) -> None:
    fb, send = isolated_feedback, consuming
    m = member()
    fb.clock.set(T0)
    c = (
        await fb.client.post(
            "/v1/complaints",
            json={
                "member_id": m,
                "channel": "phone",
                "category": "x",
                "description": "Call me on 138-0000-0000",
                "order_id": "o-77",
            },
        )
    ).json()
    ops = {"X-Operator-Id": "agent-ann"}
    for action in ("acknowledge", "resolve"):
        r = await fb.client.post(
            f"/v1/complaints/{c['id']}/actions",
            json={"action": action, "note": "spoke to her at home"},
            headers=ops,
        )
        assert r.status_code == 200
    survey = (
        await fb.client.post(
            "/v1/surveys",
            json={
                "name": "s",
                "questions": [
                    {"id": "nps", "type": "nps", "text": "?"},
                    {"id": "why", "type": "text", "text": "Why?"},
                ],
            },
        )
    ).json()
    answered = await fb.client.post(
        f"/v1/surveys/{survey['id']}/responses",
        json={"member_id": m, "answers": {"nps": 3, "why": "I live at 5 Main St"}},
    )
    assert answered.status_code == 201

    export = (await fb.client.get(f"/v1/feedback/members/{m}/export")).json()
    assert export["complaints"][0]["description"] == "Call me on 138-0000-0000"
    assert [h["action"] for h in export["complaints"][0]["history"]] == [
        "open",
        "acknowledge",
        "resolve",
    ]
    assert {f["reason"] for f in export["follow_ups"]} == {"post_resolution", "survey_detractor"}
    assert export["survey_responses"][0]["answers"]["why"] == "I live at 5 Main St"

    await send(MemberErasedV1, m)

    async def gone() -> bool:
        response = await fb.client.get(f"/v1/feedback/members/{m}/export")
        return response.status_code == 404

    await eventually(gone)
    kept = (await fb.client.get(f"/v1/complaints/{c['id']}")).json()
    assert kept["member_id"].startswith("erased-")
    assert kept["description"] == "[erased]" and kept["order_id"] is None
    assert all(h["note"] is None for h in kept["history"])
    assert kept["history"][0]["actor"] == f"member:{kept['member_id']}"
    assert kept["status"] == "resolved"  # the facts the metrics count stay
    assert (await fb.client.get("/v1/complaints", params={"member_id": m})).json()["items"] == []
    assert (await fb.client.get("/v1/follow-ups", params={"member_id": m})).json()["items"] == []

    # nothing a caller sends brings the member back: 409 member-erased, nothing written
    again = [
        await fb.client.post(
            "/v1/complaints",
            json={"member_id": m, "channel": "app", "category": "x", "description": "hi"},
        ),
        await fb.client.post(
            f"/v1/surveys/{survey['id']}/responses", json={"member_id": m, "answers": {"nps": 9}}
        ),
    ]
    for response in again:
        assert response.status_code == 409, response.text
        assert response.json()["type"].endswith("/member-erased")
    assert (await fb.client.get(f"/v1/feedback/members/{m}/export")).status_code == 404


async def test_orders_and_refunds_feed_the_complaint_rate(  # type: ignore[no-untyped-def]
    isolated_feedback: IsolatedFeedback, consuming
) -> None:
    fb, send = isolated_feedback, consuming
    m = member()
    when = "2031-01-10T10:00:00+00:00"
    for _ in range(2):
        order = {"order_id": f"o-{uuid.uuid4().hex}", "amount": "10.00", "occurred_at": when}
        await send(OrderRecordedV1, m, **order)
    await send(OrderRefundedV1, m, order_id=order["order_id"], refund_id="r1", occurred_at=when)
    period = {"from": "2031-01-01T00:00:00+00:00", "to": "2031-02-01T00:00:00+00:00"}

    async def rate() -> dict[str, Any] | None:
        body = (await fb.client.get("/v1/feedback/metrics", params=period)).json()
        r = body["current"]["complaint_rate"]
        return r if r["denominator"] == 2 else None

    assert (await eventually(rate))["numerator"] == 0

    async def refunded() -> list[dict[str, Any]] | None:
        orders = (await fb.client.get(f"/v1/feedback/members/{m}/export")).json()["orders"]
        return orders if any(o["refunded_at"] for o in orders) else None

    orders = await eventually(refunded)
    assert [o["order_id"] for o in orders if o["refunded_at"]] == [order["order_id"]]
