"""Condition language, tags, segments with live membership, history, events and explanations."""

import pytest

from segmentation.conditions.language import ConditionError, parse
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id, order, refund


@pytest.mark.parametrize(
    ("condition", "position", "fragment"),
    [
        ('value_tier = "hgh"', 13, "not a value of 'value_tier'"),
        ("order_count >", 13, "expected a value"),
        ("(order_count > 1", 16, "expected ')'"),
        ("order_count > 1 and", 19, "expected a field name"),
        ("orders > 1", 0, "unknown field 'orders'"),
        ("order_count > 1 @ 2", 16, "unexpected character '@'"),
        ('tags = "vip"', 5, "is a list: use 'contains'"),
        ('total_spend > "abc"', 14, "is a number field"),
        ("value_tier > 3", 11, "needs a number or time field"),
        ("", 0, "empty"),
        ("order_count > 1 order_count", 16, "unexpected 'order_count'"),
    ],
)
def test_parse_errors_name_the_position(condition: str, position: int, fragment: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse(condition)
    assert caught.value.position == position
    assert fragment in caught.value.message


def test_grammar_precedence_not_and_or() -> None:
    node = parse('not tier = "gold" or order_count >= 2 and categories contains "shoes"')
    assert type(node).__name__ == "BoolOp" and node.op == "or"  # type: ignore[union-attr]
    left, right = node.items  # type: ignore[union-attr]
    assert type(left).__name__ == "Not" and right.op == "and"


async def test_bad_condition_is_a_422_that_says_where(
    fresh_segmentation: FreshSegmentation,
) -> None:
    response = await fresh_segmentation.client.post(
        "/v1/segments", json={"name": "bad", "condition": "total_spend >= 100 and (tier = "}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["type"].endswith("invalid-condition") and body["position"] == 31
    assert body["errors"][0]["field"] == "condition"
    assert (await fresh_segmentation.client.get("/v1/segments")).json()["items"] == []


async def test_segment_membership_is_live_with_history_events_and_explanation(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    big, small = member_id(), member_id()
    big_order = order(big, "2025-05-01", "300.00", categories=("shoes",))
    await env.feed(enrolled(big), big_order, enrolled(small), order(small, "2025-05-01", "20.00"))
    created = await env.client.post(
        "/v1/segments",
        json={
            "name": "big shoe buyers",
            "condition": 'total_spend >= 100 and categories contains "shoes"',
        },
    )
    assert created.status_code == 201, created.text
    seg = created.json()
    assert seg["member_count"] == 1 and seg["refresh_mode"] == "live" and seg["last_computed_at"]
    sid = seg["segment_id"]
    members = (await env.client.get(f"/v1/segments/{sid}/members")).json()
    assert [m["member_id"] for m in members["items"]] == [big] and members["count"] == 1

    # small buys shoes for 200 -> enters live; big gets a refund of 250 -> leaves live
    await env.feed(order(small, "2025-06-01", "200.00", categories=("shoes",)))
    await env.feed(refund(big, big_order.data["order_id"], "250.00", "2025-06-02"))
    members = (await env.client.get(f"/v1/segments/{sid}/members")).json()
    assert [m["member_id"] for m in members["items"]] == [small] and members["count"] == 1

    events = await env.sql(
        "SELECT event_type, key, payload->'data'->>'trigger' FROM outbox "
        "WHERE event_type LIKE 'loyalty.segment.%' ORDER BY id"
    )
    assert [tuple(e) for e in events] == [
        ("loyalty.segment.entered.v1", big, "segment.created"),
        ("loyalty.segment.entered.v1", small, "loyalty.order.recorded.v1"),
        ("loyalty.segment.left.v1", big, "loyalty.order.refunded.v1"),
    ]

    why = (await env.client.get(f"/v1/segments/{sid}/explain/{big}")).json()
    assert why["in_segment"] is False and why["matches_now"] is False
    assert why["clauses"] == [
        {
            "clause": "total_spend >= 100",
            "field": "total_spend",
            "operator": ">=",
            "operand": "100",
            "member_value": "50.00",
            "result": False,
        },
        {
            "clause": 'categories contains "shoes"',
            "field": "categories",
            "operator": "contains",
            "operand": "shoes",
            "member_value": ["shoes"],
            "result": True,
        },
    ]
    assert [(h["action"], h["trigger"]) for h in why["history"]] == [
        ("entered", "segment.created"),
        ("left", "loyalty.order.refunded.v1"),
    ]
    assert why["history"][1]["reason"]["clauses"]["total_spend >= 100"] is False
    in_segment = (await env.client.get("/v1/profiles", params={"segment": sid})).json()
    assert in_segment["total"] == 1 and in_segment["items"][0]["member_id"] == small


async def test_time_window_segment_is_batch_and_members_page(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    members = sorted(member_id() for _ in range(3))
    for m in members:
        await env.feed(enrolled(m), order(m, "2020-01-01", "10.00"))
    created = (
        await env.client.post(
            "/v1/segments", json={"name": "dormant", "condition": "days_since_last_order > 365"}
        )
    ).json()
    assert created["refresh_mode"] == "batch" and created["member_count"] == 3
    page = (
        await env.client.get(f"/v1/segments/{created['segment_id']}/members", params={"limit": 2})
    ).json()
    assert [i["member_id"] for i in page["items"]] == members[:2] and page["count"] == 3
    rest = (
        await env.client.get(
            f"/v1/segments/{created['segment_id']}/members",
            params={"limit": 2, "cursor": page["next_cursor"]},
        )
    ).json()
    assert [i["member_id"] for i in rest["items"]] == members[2:] and rest["next_cursor"] is None
    dup = await env.client.post(
        "/v1/segments", json={"name": "dormant", "condition": "order_count > 0"}
    )
    assert dup.status_code == 409


async def test_rule_and_manual_tags_feed_segments(fresh_segmentation: FreshSegmentation) -> None:
    env = fresh_segmentation
    a, b = member_id(), member_id()
    await env.feed(
        enrolled(a), order(a, "2025-01-01", "500.00"), enrolled(b), order(b, "2025-01-01", "5.00")
    )
    rule = await env.client.post(
        "/v1/tags", json={"name": "big-spender", "kind": "rule", "condition": "total_spend > 100"}
    )
    assert rule.status_code == 201, rule.text
    assert (
        await env.client.post("/v1/tags", json={"name": "vip", "kind": "manual"})
    ).status_code == 201
    bad = await env.client.post(
        "/v1/tags", json={"name": "x", "kind": "rule", "condition": "spend > 1"}
    )
    assert bad.status_code == 422 and bad.json()["position"] == 0
    seg = (
        await env.client.post(
            "/v1/segments",
            json={
                "name": "vip big",
                "condition": 'tags contains "vip" and tags contains "big-spender"',
            },
        )
    ).json()
    assert seg["member_count"] == 0
    tagged = await env.client.post(f"/v1/profiles/{a}/tags", json={"add": ["vip"]})
    assert tagged.status_code == 200 and tagged.json()["tags"] == ["big-spender", "vip"]
    assert (await env.client.get(f"/v1/segments/{seg['segment_id']}")).json()["member_count"] == 1
    # b becomes a big spender through an event: the rule tag follows, b is not vip -> not in segment
    await env.feed(order(b, "2025-02-01", "200.00"))
    profile_b = (await env.client.get(f"/v1/profiles/{b}")).json()
    assert profile_b["rule_tags"] == ["big-spender"]
    assert (
        await env.client.post(f"/v1/profiles/{a}/tags", json={"add": ["big-spender"]})
    ).status_code == 422
    assert (
        await env.client.post(f"/v1/profiles/{a}/tags", json={"add": ["nope"]})
    ).status_code == 404
    await env.client.post(f"/v1/profiles/{a}/tags", json={"remove": ["vip"]})
    assert (await env.client.get(f"/v1/segments/{seg['segment_id']}")).json()["member_count"] == 0
