"""A tag's or segment's refresh mode follows from the fields its condition uses (issue #16).

A condition is ``batch`` (refreshed by every recompute, exact as of ``last_computed_at``)
iff it uses a field that only the recompute (or the clock) changes, or asks for a batch
rule tag; otherwise ``live`` (kept current by events). The property is checked on random
conditions against the list the brief names; the list itself against what events and the
recompute actually change on real profiles; the behaviour through the API.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from segmentation.conditions.compile import field_expr
from segmentation.conditions.fields import FIELDS, RULE_TAG_FIELDS, FieldSpec
from segmentation.conditions.language import comparisons, parse, refresh_mode
from segmentation.profiles.models import Profile
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import (
    complaint,
    enrolled,
    interaction,
    member_id,
    order,
    points_earned,
    refund,
    survey,
    tier_changed,
)

# What only a recompute changes (the scores, the CLV fit, the strategies) or the clock.
RECOMPUTE_ONLY = {
    "value_tier",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_segment",
    "lifecycle",
    "median_gap_days",
    "p_alive",
    "expected_purchases_90d",
    "expected_value",
    "loyalty_index",
    "loyalty_type",
    "value_group",
    "behaviour_group",
    "strategies",
}
CLOCK = {"days_since_last_order", "days_since_enrolled"}
BATCH_TAGS = ["whale", "sleepy"]
TAG_WORDS = [*BATCH_TAGS, "vip", "shoes"]


def _literal(spec: FieldSpec) -> st.SearchStrategy[str]:
    if spec.kind == "number":
        return st.integers(-5, 500).map(str)
    if spec.kind == "time":
        return st.just('"2025-06-01T00:00:00+00:00"')
    if spec.choices:
        return st.sampled_from(spec.choices).map(lambda v: '"' + v.replace("'", "\\'") + '"')
    return st.sampled_from(TAG_WORDS).map(lambda v: f'"{v}"')


@st.composite
def comparison(draw: st.DrawFn, fields: dict[str, FieldSpec]) -> str:
    spec = fields[draw(st.sampled_from(sorted(fields)))]
    if spec.kind == "list":
        return f"{spec.name} contains {draw(_literal(spec))}"
    if draw(st.booleans()) and spec.kind != "string":
        return f"{spec.name} is {draw(st.sampled_from(['', 'not ']))}null"
    ops = ["=", "!=", "in"] if spec.kind == "string" else ["=", "!=", ">", ">=", "<", "<=", "in"]
    op = draw(st.sampled_from(ops))
    if op == "in":
        return f"{spec.name} in [{', '.join(draw(st.lists(_literal(spec), min_size=1)))}]"
    return f"{spec.name} {op} {draw(_literal(spec))}"


def conditions(fields: dict[str, FieldSpec]) -> st.SearchStrategy[str]:
    return st.recursive(
        comparison(fields),
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
            st.builds(lambda a, b: f"{a} or {b}", inner, inner),
            st.builds(lambda a: f"not ({a})", inner),
        ),
        max_leaves=8,
    )


@given(condition=conditions(FIELDS), batch_tags=st.sets(st.sampled_from(BATCH_TAGS)))
def test_a_segment_is_batch_iff_it_uses_a_recompute_only_field_or_a_batch_rule_tag(
    condition: str, batch_tags: set[str]
) -> None:
    clauses = comparisons(parse(condition))
    expected = any(
        c.field in RECOMPUTE_ONLY | CLOCK
        or (c.field == "tags" and c.op == "contains" and c.value in batch_tags)
        for c in clauses
    )
    mode = refresh_mode(parse(condition), frozenset(batch_tags))
    assert mode == ("batch" if expected else "live"), condition


@given(condition=conditions(RULE_TAG_FIELDS))
def test_a_rule_tag_is_batch_iff_it_uses_a_recompute_only_field(condition: str) -> None:
    """Inside a rule tag ``tags`` means the manual tags: no rule tag depends on another."""
    node = parse(condition, allowed=RULE_TAG_FIELDS)
    expected = any(c.field in RECOMPUTE_ONLY | CLOCK for c in comparisons(node))
    assert refresh_mode(node) == ("batch" if expected else "live"), condition


# ---------------------------------------------------------------- the list against the code


async def _snapshot(env: FreshSegmentation, members: list[str]) -> dict[str, dict[str, Any]]:
    """Every condition field's value per member, as the conditions see it."""
    names = sorted(FIELDS)
    cols = [Profile.__table__.c.member_id.label("who")] + [field_expr(n).label(n) for n in names]
    async with env.app.state.sessionmaker() as session:
        rows = (
            await session.execute(select(*cols).where(Profile.__table__.c.member_id.in_(members)))
        ).all()
    return {r.who: {n: _plain(getattr(r, n)) for n in names} for r in rows}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(value)
    if isinstance(value, Decimal):
        return str(value.normalize())
    return value


def _changed(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> set[str]:
    return {f for m in before for f in before[m] if before[m][f] != after[m][f]}


def _events(m: str, month: str, amount: str) -> list[Any]:
    placed = order(m, f"2025-{month}-03", amount, categories=("shoes",), channel="app")
    return [
        placed,
        order(m, f"2025-{month}-09", "40.00", coupon=True, discount="5.00"),
        refund(m, placed.data["order_id"], "10.00", f"2025-{month}-10"),
        points_earned(m, 40, 140, f"2025-{month}-11"),
        tier_changed(m, "gold" if month == "11" else "silver", f"2025-{month}-12"),
        *[interaction(m, kind, f"2025-{month}-13") for kind in ("review", "share", "login")],
        complaint(m, f"2025-{month}-14"),
        survey(m, nps=9, csat=5, at=f"2025-{month}-15"),
    ]


async def test_events_change_no_recompute_only_field_and_the_recompute_writes_them(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    rng = random.Random(16)
    members = [member_id() for _ in range(24)]
    for i, m in enumerate(members):
        repeat = [
            order(
                m,
                f"2025-0{rng.randrange(1, 6)}-{rng.randrange(1, 29):02d}",
                f"{rng.randrange(20, 200)}.00",
            )
            for _ in range(i % 5)
        ]  # a history the CLV models can be fitted on
        await env.feed(enrolled(m), *_events(m, "03", f"{20 + 30 * i}.00"), *repeat)
    start = await _snapshot(env, members)
    await env.recompute("2025-06-01T00:00:00+00:00")
    scored = await _snapshot(env, members)
    # the recompute writes every recompute-only field (and nothing else)
    assert _changed(start, scored) - CLOCK == RECOMPUTE_ONLY
    # every kind of event, and a manual tag: no recompute-only field moves
    await env.client.post("/v1/tags", json={"name": "vip", "kind": "manual"})
    for i, m in enumerate(members):
        await env.feed(*_events(m, "11", f"{500 - 30 * i}.00"))
        tagged = await env.client.post(f"/v1/profiles/{m}/tags", json={"add": ["vip"]})
        assert tagged.status_code == 200, tagged.text
    after_events = await _snapshot(env, members)
    moved = _changed(scored, after_events)
    assert moved and not moved & RECOMPUTE_ONLY, moved
    await env.recompute("2025-12-01T00:00:00+00:00")
    rescored = await _snapshot(env, members)
    assert _changed(after_events, rescored) - CLOCK <= RECOMPUTE_ONLY


# ---------------------------------------------------------------- through the API


async def _post(env: FreshSegmentation, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await env.client.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _member_ids(env: FreshSegmentation, segment_id: str) -> list[str]:
    page = (await env.client.get(f"/v1/segments/{segment_id}/members")).json()
    return [item["member_id"] for item in page["items"]]


async def _spenders(env: FreshSegmentation) -> tuple[str, list[str]]:
    """One member in the high value tier (5 orders, the top spend) and four others."""
    top, others = member_id(), [member_id() for _ in range(4)]
    await env.feed(enrolled(top), *[order(top, f"2025-0{i}-10", "200.00") for i in range(1, 6)])
    for i, m in enumerate(others):
        await env.feed(enrolled(m), *[order(m, f"2025-0{k}-12", "20.00") for k in range(1, i + 2)])
    return top, others


async def test_score_tags_and_segments_are_batch_and_change_only_at_a_recompute(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    top, _ = await _spenders(env)
    whale = await _post(
        env, "/v1/tags", {"name": "whale", "kind": "rule", "condition": 'value_tier = "high"'}
    )
    buyer = await _post(
        env, "/v1/tags", {"name": "buyer", "kind": "rule", "condition": "order_count >= 1"}
    )
    assert (whale["refresh_mode"], buyer["refresh_mode"]) == ("batch", "live")
    whales = await _post(
        env, "/v1/segments", {"name": "whales", "condition": 'tags contains "whale"'}
    )
    six = await _post(
        env,
        "/v1/segments",
        {"name": "high six", "condition": 'value_tier = "high" and order_count >= 6'},
    )
    buyers = await _post(env, "/v1/segments", {"name": "buyers", "condition": "order_count >= 1"})
    assert [s["refresh_mode"] for s in (whales, six, buyers)] == ["batch", "batch", "live"]

    await env.recompute("2026-01-01T00:00:00+00:00")
    assert (await env.client.get(f"/v1/profiles/{top}")).json()["rule_tags"] == ["buyer", "whale"]
    assert await _member_ids(env, whales["segment_id"]) == [top]
    assert await _member_ids(env, six["segment_id"]) == []
    computed = (await env.client.get(f"/v1/segments/{six['segment_id']}")).json()
    assert computed["last_computed_at"] > six["last_computed_at"]

    # a sixth order: the live refresh keeps the batch tag and leaves the batch segment alone
    await env.feed(order(top, "2025-12-20", "200.00"))
    assert (await env.client.get(f"/v1/profiles/{top}")).json()["rule_tags"] == ["buyer", "whale"]
    assert await _member_ids(env, six["segment_id"]) == []
    await env.recompute("2026-01-01T00:00:00+00:00")
    assert await _member_ids(env, six["segment_id"]) == [top]
    why = (await env.client.get(f"/v1/segments/{six['segment_id']}/explain/{top}")).json()
    assert [(h["action"], h["trigger"]) for h in why["history"]] == [("entered", "recompute")]
    assert why["refresh_mode"] == "batch" and why["last_computed_at"] > computed["last_computed_at"]


async def test_a_segment_on_a_rule_tag_follows_the_tags_mode(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    segment = await _post(
        env, "/v1/segments", {"name": "sleepers", "condition": 'tags contains "sleepy"'}
    )
    assert segment["refresh_mode"] == "live"  # no such tag yet: a manual tag it may be
    await _post(
        env, "/v1/tags", {"name": "sleepy", "kind": "rule", "condition": 'lifecycle = "sleeping"'}
    )
    path = f"/v1/segments/{segment['segment_id']}"
    assert (await env.client.get(path)).json()["refresh_mode"] == "batch"
    edited = await env.client.patch(
        "/v1/tags/sleepy", json={"condition": "days_since_last_order > 60 or order_count = 0"}
    )
    assert edited.status_code == 200 and edited.json()["refresh_mode"] == "batch"
    edited = await env.client.patch("/v1/tags/sleepy", json={"condition": "order_count = 0"})
    assert edited.status_code == 200 and edited.json()["refresh_mode"] == "live"
    assert (await env.client.get(path)).json()["refresh_mode"] == "live"
