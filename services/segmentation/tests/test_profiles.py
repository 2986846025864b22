"""Profiles from events: every event type, idempotency, order tolerance, paging."""

import uuid

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from loyalty_shared.contracts import InvalidPayload
from loyalty_shared.contracts.points import PointsExpiredV1, PointsRedeemedV1
from loyalty_shared.events import make_event
from loyalty_shared.inbox import EventConsumer
from loyalty_shared.testing import background, eventually
from loyalty_shared.topics import FEEDBACK_EVENTS, POINTS_EVENTS
from segmentation.profiles.handlers import HANDLERS
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import (
    checked_in,
    complaint,
    enrolled,
    interaction,
    member_id,
    order,
    points_earned,
    refund,
    survey,
    tier_changed,
    ts,
)


async def test_every_event_type_lands_in_the_profile(fresh_segmentation: FreshSegmentation) -> None:
    env = fresh_segmentation
    m = member_id()
    first = order(
        m,
        "2025-03-01",
        "100.00",
        coupon=True,
        discount="10.00",
        channel="app",
        categories=("shoes", "socks"),
    )
    await env.feed(
        enrolled(m, "2025-01-01", tier="bronze"),
        first,
        order(m, "2025-04-01", "50.00", channel="store", categories=("shoes",)),
        refund(m, first.data["order_id"], "30.00", "2025-03-05"),
        points_earned(m, 100, 100, "2025-03-01"),
        points_earned(m, 50, 150, "2025-04-01"),
        PointsRedeemedV1.sample(
            member_id=m, points=40, balance_available=110, occurred_at=ts("2025-04-02")
        ).event(m),
        PointsExpiredV1.sample(
            member_id=m, points=10, balance_available=100, occurred_at=ts("2025-04-03")
        ).event(m),
        interaction(m, "review", "2025-04-02"),
        interaction(m, "share", "2025-04-02"),
        checked_in(m, "2025-04-03"),
        interaction(m, "login", "2025-04-03"),
        interaction(m, "page_view", "2025-04-03"),
        complaint(m, "2025-04-05"),
        survey(m, nps=9, csat=4),
        survey(m, csat=5),
        tier_changed(m, "silver", "2025-04-01"),
    )
    body = (await env.client.get(f"/v1/profiles/{m}")).json()
    assert body["order_count"] == 2
    assert body["gross_spend"] == "150.00"
    assert body["refunded_amount"] == "30.00" and body["refund_count"] == 1
    assert body["total_spend"] == "120.00"  # refunds reduce spend
    assert body["average_order_value"] == "60.00"
    assert body["first_order_at"].startswith("2025-03-01") and body["last_order_at"].startswith(
        "2025-04-01"
    )
    assert body["categories"] == ["shoes", "socks"] and sorted(body["channels"]) == ["app", "store"]
    assert body["coupon_order_count"] == 1 and body["discount_total"] == "10.00"
    assert body["coupon_share"] == 0.5
    assert (body["points_earned"], body["points_redeemed"], body["points_expired"]) == (150, 40, 10)
    assert body["points_balance"] == 100
    assert [body[k] for k in ("reviews", "shares", "check_ins", "logins", "page_views")] == [1] * 5
    assert body["complaints"] == 1 and body["surveys"] == 2
    assert body["nps_last"] == 9 and body["csat_avg"] == "4.50"
    assert body["tier"] == "silver" and body["timezone"] == "Europe/Paris"


async def test_handlers_are_idempotent(fresh_segmentation: FreshSegmentation) -> None:
    env = fresh_segmentation
    m = member_id()
    o = order(m, "2025-05-01", "80.00", order_id=f"o-{uuid.uuid4().hex}")
    earned = points_earned(m, 80, 80, "2025-05-01")
    await env.feed(enrolled(m), o, earned)
    await env.feed(o, earned)  # redelivered: same event ids
    # the same order published again under a new event id (e.g. a replayed outbox)
    await env.feed(order(m, "2025-05-01", "80.00", order_id=o.data["order_id"]))
    r = refund(m, o.data["order_id"], "20.00", "2025-05-02")
    await env.feed(r, r)
    body = (await env.client.get(f"/v1/profiles/{m}")).json()
    assert body["order_count"] == 1 and body["total_spend"] == "60.00"
    assert body["points_earned"] == 80 and body["refund_count"] == 1


async def test_out_of_order_events_and_a_payload_without_a_required_field(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m = member_id()
    later = order(m, "2025-09-01", "10.00")
    earlier = order(m, "2025-01-01T00:00", "5.00")
    await env.feed(later, points_earned(m, 10, 15, "2025-09-01"))
    await env.feed(earlier, points_earned(m, 5, 5, "2025-01-01"))  # older balance arrives last
    # an order without the fields its producer's model requires is refused, naming them
    bare = dict(earlier.data)
    del bare["currency"], bare["items"]
    with pytest.raises(InvalidPayload, match=r"currency: Field required; items: Field required"):
        await env.feed(make_event(earlier.source, earlier.type, m, bare))
    await env.feed(enrolled(m, "2024-12-01"))  # enrolment after the orders
    body = (await env.client.get(f"/v1/profiles/{m}")).json()
    assert body["first_order_at"].startswith("2025-01-01") and body["last_order_at"].startswith(
        "2025-09-01"
    )
    assert body["points_balance"] == 15  # the newest balance wins
    assert body["enrolled_at"].startswith("2024-12-01") and body["order_count"] == 2


async def test_unknown_profile_is_a_problem_404(segmentation_client: httpx.AsyncClient) -> None:
    response = await segmentation_client.get(f"/v1/profiles/{member_id()}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_profiles_list_pages_with_cursor_and_total(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    members = sorted(member_id() for _ in range(5))
    for m in members:
        await env.feed(enrolled(m))
    first = (await env.client.get("/v1/profiles", params={"limit": 2})).json()
    assert first["total"] == 5 and [p["member_id"] for p in first["items"]] == members[:2]
    second = (
        await env.client.get("/v1/profiles", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [p["member_id"] for p in second["items"]] == members[2:4]
    third = (
        await env.client.get("/v1/profiles", params={"limit": 2, "cursor": second["next_cursor"]})
    ).json()
    assert [p["member_id"] for p in third["items"]] == members[4:] and third["next_cursor"] is None
    bad = await env.client.get("/v1/profiles", params={"value_tier": "gold"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.value_tier"


async def test_events_from_the_broker_reach_the_profile(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    m = member_id()
    producer = AIOKafkaProducer(bootstrap_servers=env.settings.kafka_bootstrap)
    await producer.start()
    try:
        for event, topic in (
            (enrolled(m), POINTS_EVENTS),
            (order(m, "2025-06-01", "42.00"), POINTS_EVENTS),
            (complaint(m, "2025-06-02"), FEEDBACK_EVENTS),
        ):
            await producer.send_and_wait(topic, event.to_json_bytes(), key=m.encode())
    finally:
        await producer.stop()

    async def arrived() -> dict | None:  # type: ignore[type-arg]
        response = await env.client.get(f"/v1/profiles/{m}")
        body = response.json()
        ok = response.status_code == 200 and body["order_count"] == 1 and body["complaints"] == 1
        return body if ok else None

    consumer = EventConsumer(
        env.settings,
        env.app.state.sessionmaker,
        topics=[POINTS_EVENTS, FEEDBACK_EVENTS],
        handlers=HANDLERS,
        group_id=f"segmentation-test-{uuid.uuid4().hex[:8]}",
    )
    async with background(consumer.run):
        body = await eventually(arrived, timeout=30)
    assert body["total_spend"] == "42.00"


async def test_one_batch_with_duplicates_and_mixed_types(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """A polled batch is applied set-based for orders and points: same result as one by one."""
    env = fresh_segmentation
    m = member_id()
    a = order(m, "2025-03-01", "30.00", order_id=f"o-{uuid.uuid4().hex}", categories=("tea",))
    again = order(m, "2025-03-01", "30.00", order_id=a.data["order_id"])  # new event id
    b = order(m, "2025-01-01", "20.00", channel="app", categories=("cups", "tea"))
    await env.feed(
        points_earned(m, 30, 50, "2025-03-01"),
        a,
        refund(m, a.data["order_id"], "5.00", "2025-03-02"),
        again,
        b,
        points_earned(m, 20, 20, "2025-01-01"),  # older balance, later in the batch
        enrolled(m, "2024-12-01"),
        a,  # the same event twice in one batch
    )
    body = (await env.client.get(f"/v1/profiles/{m}")).json()
    assert body["order_count"] == 2 and body["total_spend"] == "45.00"
    assert body["first_order_at"].startswith("2025-01-01")
    assert body["last_order_at"].startswith("2025-03-01")
    assert body["categories"] == ["cups", "tea"] and body["channels"] == ["app", "web"]
    assert body["points_earned"] == 50 and body["points_balance"] == 50


async def test_categories_mean_themselves_whatever_their_characters(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """The batch statement binds each order's categories as an array literal: quotes,
    backslashes, commas, braces, spaces, NULL and non-ASCII names come back as sent."""
    env = fresh_segmentation
    m = member_id()
    odd = ('say "hi"', "back\\slash", "a,b", "{x}", "NULL", " padded ", "thé")
    await env.feed(
        order(m, "2025-03-01", "30.00", categories=odd[:4]),
        order(m, "2025-03-02", "30.00", categories=odd[4:]),
        order(m, "2025-03-03", "30.00", categories=("a,b",)),  # nothing new: kept as is
    )
    body = (await env.client.get(f"/v1/profiles/{m}")).json()
    assert body["categories"] == sorted(odd)
    stored = await env.sql(
        "SELECT categories FROM member_orders WHERE member_id = :m ORDER BY occurred_at", m=m
    )
    assert [row[0] for row in stored] == [sorted(odd[:4]), sorted(odd[4:]), ["a,b"]]


async def test_one_batch_of_enrolments_and_tier_changes(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """A history import's enrolments and upgrades come in large batches: applied set-based,
    they leave what one event at a time leaves (the newest tier by time, equal times the
    later one; the earliest enrolment; the last timezone)."""
    env = fresh_segmentation
    m, n = member_id(), member_id()
    await env.feed(
        enrolled(m, "2025-05-01"),
        tier_changed(m, "silver", "2025-06-01"),
        tier_changed(m, "diamond", "2025-03-01"),  # older, later in the batch: not the tier
        tier_changed(n, "silver", "2025-02-01"),
        tier_changed(n, "gold", "2025-02-01"),  # the same time, later: it is the tier
        enrolled(n, "2024-12-01"),
        enrolled(m, "2025-04-01"),  # an earlier enrolment of m, later in the batch
    )
    first = (await env.client.get(f"/v1/profiles/{m}")).json()
    assert first["tier"] == "silver" and first["enrolled_at"].startswith("2025-04-01")
    second = (await env.client.get(f"/v1/profiles/{n}")).json()
    assert second["tier"] == "gold" and second["enrolled_at"].startswith("2024-12-01")
    # and the history keeps every change (tier distributions as of a date)
    await env.feed(tier_changed(m, "gold", "2025-07-01"))
    again = (await env.client.get(f"/v1/profiles/{m}")).json()
    assert again["tier"] == "gold"
