"""Tags and segments can be renamed, edited and archived, their history kept (issue #16)."""

from __future__ import annotations

from typing import Any

from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id, order


async def _created(env: FreshSegmentation, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await env.client.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _segment_events(env: FreshSegmentation, segment_id: str) -> list[tuple[str, ...]]:
    rows = await env.sql(
        "SELECT event_type, key, payload->'data'->>'segment_name', payload->'data'->>'trigger' "
        "FROM outbox WHERE payload->'data'->>'segment_id' = :s ORDER BY id",
        s=segment_id,
    )
    return [tuple(r) for r in rows]


async def _members(env: FreshSegmentation, segment_id: str) -> list[str]:
    page = (await env.client.get(f"/v1/segments/{segment_id}/members")).json()
    return [item["member_id"] for item in page["items"]]


async def test_a_segment_is_renamed_and_edited_with_every_version_kept(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    a, b = sorted(member_id() for _ in range(2))
    await env.feed(enrolled(a), order(a, "2025-03-01", "300.00"))
    await env.feed(enrolled(b), order(b, "2025-03-01", "50.00"))
    seg = await _created(env, "/v1/segments", {"name": "big", "condition": "total_spend >= 100"})
    sid, path = seg["segment_id"], f"/v1/segments/{seg['segment_id']}"

    wider = await env.client.patch(path, json={"condition": "total_spend >= 40"})
    assert wider.status_code == 200, wider.text
    assert wider.json()["member_count"] == 2 and wider.json()["name"] == "big"
    renamed = await env.client.patch(path, json={"name": "big spenders", "description": "40+"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "big spenders"
    assert await _members(env, sid) == [a, b]
    scored = await env.client.patch(path, json={"condition": 'value_tier = "high"'})
    assert scored.json()["refresh_mode"] == "batch" and scored.json()["member_count"] == 0
    same = await env.client.patch(path, json={"condition": 'value_tier = "high"'})
    assert same.status_code == 200 and same.json()["updated_at"] == scored.json()["updated_at"]
    put = await env.client.put(path, json={"name": "everyone", "condition": "order_count >= 1"})
    assert put.status_code == 200 and put.json()["description"] is None

    assert await _segment_events(env, sid) == [
        ("loyalty.segment.entered.v1", a, "big", "segment.created"),
        ("loyalty.segment.entered.v1", b, "big", "segment.updated"),
        ("loyalty.segment.left.v1", a, "big spenders", "segment.updated"),
        ("loyalty.segment.left.v1", b, "big spenders", "segment.updated"),
        ("loyalty.segment.entered.v1", a, "everyone", "segment.updated"),
        ("loyalty.segment.entered.v1", b, "everyone", "segment.updated"),
    ]
    versions = (await env.client.get(f"{path}/definitions")).json()["items"]
    assert [
        (v["version"], v["change"], v["name"], v["condition"], v["refresh_mode"]) for v in versions
    ] == [
        (1, "created", "big", "total_spend >= 100", "live"),
        (2, "updated", "big", "total_spend >= 40", "live"),
        (3, "updated", "big spenders", "total_spend >= 40", "live"),
        (4, "updated", "big spenders", 'value_tier = "high"', "batch"),
        (5, "updated", "everyone", "order_count >= 1", "live"),
    ]
    assert versions[2]["description"] == "40+" and versions[4]["description"] is None


async def test_an_archived_segment_lets_every_member_go_and_keeps_its_history(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    a, b = sorted(member_id() for _ in range(2))
    for m in (a, b):
        await env.feed(enrolled(m), order(m, "2025-03-01", "30.00"))
    seg = await _created(env, "/v1/segments", {"name": "buyers", "condition": "order_count >= 1"})
    sid, path = seg["segment_id"], f"/v1/segments/{seg['segment_id']}"

    archived = await env.client.post(f"{path}/archive")
    assert archived.status_code == 200, archived.text
    body = archived.json()
    assert body["archived_at"] and body["member_count"] == 0
    assert await _members(env, sid) == []
    assert [e[0::3] for e in await _segment_events(env, sid)][2:] == [
        ("loyalty.segment.left.v1", "segment.archived"),
        ("loyalty.segment.left.v1", "segment.archived"),
    ]
    again = await env.client.post(f"{path}/archive")
    assert again.status_code == 200 and again.json()["archived_at"] == body["archived_at"]

    # no more refreshes: neither events nor a recompute bring anyone back
    c = member_id()
    await env.feed(enrolled(c), order(c, "2025-04-01", "30.00"), order(a, "2025-04-02", "5.00"))
    await env.recompute("2026-01-01T00:00:00+00:00")
    assert await _members(env, sid) == [] and len(await _segment_events(env, sid)) == 4

    why = (await env.client.get(f"{path}/explain/{a}")).json()
    assert [(h["action"], h["trigger"]) for h in why["history"]] == [
        ("entered", "segment.created"),
        ("left", "segment.archived"),
    ]
    listed = (await env.client.get("/v1/segments")).json()["items"]
    assert sid not in [s["segment_id"] for s in listed]
    every = (await env.client.get("/v1/segments", params={"include_archived": "true"})).json()
    assert sid in [s["segment_id"] for s in every["items"]]
    versions = (await env.client.get(f"{path}/definitions")).json()["items"]
    assert [v["change"] for v in versions] == ["created", "archived"]

    refused = await env.client.patch(path, json={"name": "again"})
    assert refused.status_code == 409 and refused.json()["type"].endswith("segment-archived")
    reused = await env.client.post(
        "/v1/segments", json={"name": "buyers", "condition": "order_count >= 1"}
    )
    assert reused.status_code == 201 and reused.json()["member_count"] == 3


async def test_tags_are_renamed_edited_and_archived_unless_a_condition_asks_for_them(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    a, b = member_id(), member_id()
    await env.feed(enrolled(a), order(a, "2025-03-01", "300.00"))
    await env.feed(enrolled(b), order(b, "2025-03-01", "30.00"))
    await _created(env, "/v1/tags", {"name": "vip", "kind": "manual"})
    await _created(
        env, "/v1/tags", {"name": "big", "kind": "rule", "condition": "total_spend > 100"}
    )
    assert (await env.client.post(f"/v1/profiles/{a}/tags", json={"add": ["vip"]})).is_success
    seg = await _created(
        env, "/v1/segments", {"name": "vips", "condition": 'tags contains "vip" or reviews > 9'}
    )

    in_use = await env.client.patch("/v1/tags/vip", json={"name": "gold"})
    assert in_use.status_code == 409, in_use.text
    assert in_use.json()["used_by"] == [
        {"kind": "segment", "segment_id": seg["segment_id"], "name": "vips"}
    ]
    assert (await env.client.post("/v1/tags/vip/archive")).status_code == 409
    await env.client.patch(f"/v1/segments/{seg['segment_id']}", json={"condition": "reviews > 9"})

    renamed = await env.client.patch("/v1/tags/vip", json={"name": "gold"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "gold"
    profile = (await env.client.get(f"/v1/profiles/{a}")).json()
    assert (profile["manual_tags"], profile["rule_tags"]) == (["gold"], ["big"])
    assert (await env.client.get("/v1/tags/vip")).status_code == 404
    edited = await env.client.patch("/v1/tags/big", json={"condition": "total_spend > 10"})
    assert edited.status_code == 200 and edited.json()["refresh_mode"] == "live"
    assert (await env.client.get(f"/v1/profiles/{b}")).json()["rule_tags"] == ["big"]
    moved = await env.client.put("/v1/tags/big", json={"name": "large", "condition": "rfm_m = 5"})
    assert moved.status_code == 200 and moved.json()["refresh_mode"] == "batch"
    assert (await env.client.get(f"/v1/profiles/{b}")).json()["rule_tags"] == []

    archived = await env.client.post("/v1/tags/gold/archive")
    assert archived.status_code == 200 and archived.json()["archived_at"]
    assert (await env.client.get(f"/v1/profiles/{a}")).json()["manual_tags"] == []
    again = await env.client.post(f"/v1/profiles/{a}/tags", json={"add": ["gold"]})
    assert again.status_code == 409 and again.json()["type"].endswith("tag-archived")
    assert "gold" not in [t["name"] for t in (await env.client.get("/v1/tags")).json()]
    taken = await env.client.post("/v1/tags", json={"name": "gold", "kind": "manual"})
    assert taken.status_code == 409
    versions = (await env.client.get("/v1/tags/gold/definitions")).json()["items"]
    assert [(v["change"], v["name"]) for v in versions] == [
        ("created", "vip"),
        ("updated", "gold"),
        ("archived", "gold"),
    ]
    large = (await env.client.get("/v1/tags/large/definitions")).json()["items"]
    assert [(v["name"], v["condition"]) for v in large] == [
        ("big", "total_spend > 100"),
        ("big", "total_spend > 10"),
        ("large", "rfm_m = 5"),
    ]


async def test_bad_edits_are_problems_never_500(fresh_segmentation: FreshSegmentation) -> None:
    env = fresh_segmentation
    seg = await _created(env, "/v1/segments", {"name": "one", "condition": "order_count >= 1"})
    await _created(env, "/v1/segments", {"name": "two", "condition": "order_count >= 2"})
    await _created(env, "/v1/tags", {"name": "vip", "kind": "manual"})
    path = f"/v1/segments/{seg['segment_id']}"
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("PATCH", path, {"condition": "order_count >"}, 422, "invalid-condition"),
        ("PATCH", path, {"name": None}, 422, "validation-error"),
        ("PATCH", path, {"colour": "red"}, 422, "validation-error"),
        ("PATCH", path, {"name": "two"}, 409, "name-taken"),
        ("PUT", path, {"name": "x"}, 422, "validation-error"),
        ("PATCH", "/v1/segments/seg_nope", {"name": "x"}, 404, "segment-not-found"),
        ("POST", "/v1/segments/seg_nope/archive", {}, 404, "segment-not-found"),
        ("PATCH", "/v1/tags/vip", {"condition": "order_count > 1"}, 422, "invalid-condition"),
        ("PATCH", "/v1/tags/vip", {"name": "not ok!"}, 422, "validation-error"),
        ("PUT", "/v1/tags/vip", {"name": "vip", "kind": "rule"}, 422, "validation-error"),
        ("PATCH", "/v1/tags/nope", {"description": "x"}, 404, "tag-not-found"),
    ]
    for method, url, body, status, slug in cases:
        response = await env.client.request(method, url, json=body)
        assert response.status_code == status, (method, url, body, response.text)
        assert response.json()["type"].endswith(slug), response.json()
    bad = await env.client.patch(path, json={"condition": "order_count >"})
    assert bad.json()["errors"][0]["field"] == "condition" and bad.json()["position"] == 13
