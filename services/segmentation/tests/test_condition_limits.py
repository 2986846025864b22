"""The condition language at its edges: size limits, nesting, and literals that mean themselves."""

import pytest

from segmentation.conditions.language import (
    MAX_CLAUSES,
    MAX_DEPTH,
    ConditionError,
    ConditionLimit,
    parse,
)
from segmentation.testing import FreshSegmentation
from segmentation.testing_events import enrolled, member_id, order


def _clauses(n: int) -> str:
    """``n`` short clauses joined by or: the first is true for anyone with one order."""
    return " or ".join(["order_count = 1"] + [f"reviews = {i}" for i in range(1, n)])


def _nested(depth: int) -> str:
    return "(" * depth + "order_count = 1" + ")" * depth


def test_the_limits_leave_room_for_real_conditions() -> None:
    assert MAX_CLAUSES >= 200 and MAX_DEPTH >= 32
    assert len(parse(_clauses(MAX_CLAUSES)).items) == MAX_CLAUSES  # type: ignore[union-attr]
    parse(_nested(MAX_DEPTH))
    parse("not " * MAX_DEPTH + "order_count = 1")
    parse("(not " * (MAX_DEPTH // 2) + "order_count = 1" + ")" * (MAX_DEPTH // 2))


@pytest.mark.parametrize(
    ("condition", "limit", "position"),
    [
        (_clauses(MAX_CLAUSES + 1), "clauses", len(_clauses(MAX_CLAUSES)) + len(" or ")),
        (_nested(MAX_DEPTH + 1), "depth", MAX_DEPTH),
        ("(" * 3_999, "depth", MAX_DEPTH),
        ("not " * 990 + "order_count = 1", "depth", 4 * MAX_DEPTH),
        ("not (" * 790, "depth", 5 * (MAX_DEPTH // 2)),
    ],
)
def test_limits_are_refused_while_parsing(condition: str, limit: str, position: int) -> None:
    """Refused at the first token over the limit: no recursion deeper than the limit."""
    with pytest.raises(ConditionLimit) as caught:
        parse(condition)
    assert caught.value.limit_name == limit
    assert caught.value.position == position
    assert str(MAX_CLAUSES if limit == "clauses" else MAX_DEPTH) in caught.value.message


def test_a_limit_is_a_condition_error() -> None:
    with pytest.raises(ConditionError):
        parse(_nested(MAX_DEPTH + 1))


@pytest.mark.parametrize(
    ("condition", "limit"),
    [
        (_clauses(MAX_CLAUSES + 1), "clauses"),
        (_nested(1000), "depth"),
        ("(" * 3999, "depth"),
        ("not " * 990 + "order_count = 1", "depth"),
    ],
)
async def test_a_condition_over_a_limit_is_a_422_naming_the_limit_and_field(
    fresh_segmentation: FreshSegmentation, condition: str, limit: str
) -> None:
    env = fresh_segmentation
    for path, body in (
        ("/v1/segments", {"name": "big", "condition": condition}),
        ("/v1/tags", {"name": "big", "kind": "rule", "condition": condition}),
    ):
        response = await env.client.post(path, json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith("/invalid-condition")
        maximum = MAX_CLAUSES if limit == "clauses" else MAX_DEPTH
        assert problem["limit"] == {"name": limit, "max": maximum}
        (error,) = problem["errors"]
        assert error["field"] == "condition" and error["type"] == f"too-many-{limit}"
        assert str(maximum) in error["message"] and error["limit"] == maximum
    assert (await env.client.get("/v1/segments")).json()["items"] == []
    assert (await env.client.get("/v1/tags")).json() == []


async def test_a_condition_longer_than_the_length_limit_is_a_422(
    fresh_segmentation: FreshSegmentation,
) -> None:
    for condition in ("(" * 10_000, "not " * 10_000 + "order_count = 1"):
        response = await fresh_segmentation.client.post(
            "/v1/segments", json={"name": "long", "condition": condition}
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "body.condition"


async def test_a_segment_at_the_clause_limit_is_kept_current_live(
    fresh_segmentation: FreshSegmentation,
) -> None:
    """Every condition that passes validation works on the live path (no argument limit)."""
    env = fresh_segmentation
    condition = _clauses(MAX_CLAUSES)
    created = await env.client.post("/v1/segments", json={"name": "wide", "condition": condition})
    assert created.status_code == 201, created.text
    segment_id = created.json()["segment_id"]
    assert created.json()["refresh_mode"] == "live"
    tag = await env.client.post(
        "/v1/tags", json={"name": "wide", "kind": "rule", "condition": condition}
    )
    assert tag.status_code == 201, tag.text
    deep = await env.client.post(
        "/v1/segments", json={"name": "deep", "condition": _nested(MAX_DEPTH)}
    )
    assert deep.status_code == 201, deep.text

    m = member_id()
    await env.feed(enrolled(m), order(m, "2025-01-01", "20.00"))
    members = (await env.client.get(f"/v1/segments/{segment_id}/members")).json()
    assert [item["member_id"] for item in members["items"]] == [m]
    deep_id = deep.json()["segment_id"]
    deep_members = (await env.client.get(f"/v1/segments/{deep_id}/members")).json()
    assert [item["member_id"] for item in deep_members["items"]] == [m]
    assert (await env.client.get(f"/v1/profiles/{m}")).json()["rule_tags"] == ["wide"]
    explained = (await env.client.get(f"/v1/segments/{segment_id}/explain/{m}")).json()
    assert explained["in_segment"] and len(explained["clauses"]) == MAX_CLAUSES
    history = explained["history"]
    assert len(history) == 1 and history[0]["trigger"] == "loyalty.order.recorded.v1"
    reasons = history[0]["reason"]["clauses"]
    assert len(reasons) == MAX_CLAUSES
    assert reasons["order_count = 1"] is True
    assert not any(v for k, v in reasons.items() if k != "order_count = 1")


# tier values as a client may send them: LIKE wildcards, quotes, backslashes, colons
ODD = ["50%", "a_b", "it's", 'say "hi"', "back\\slash", "x:y", "%", "_"]


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def test_percent_underscore_quotes_and_backslashes_mean_themselves_on_both_paths(
    fresh_segmentation: FreshSegmentation,
) -> None:
    env = fresh_segmentation
    segments: dict[str, str] = {}
    conditions = [f"tier = {_quoted(v)}" for v in ODD]
    conditions += [f"tier contains {_quoted(v)}" for v in ("%", "_", "\\", "'", '"')]
    conditions += [f"tier in [{_quoted('50%')}, {_quoted('a_b')}]"]
    before = {v: member_id() for v in [*ODD, "500", "axb", "its", "backslash", "plain"]}
    await env.feed(*(enrolled(m, tier=v) for v, m in before.items()))
    for i, condition in enumerate(conditions):
        created = await env.client.post(
            "/v1/segments", json={"name": f"odd {i}", "condition": condition}
        )
        assert created.status_code == 201, created.text
        segments[condition] = created.json()["segment_id"]
    # the same tiers again, for members that arrive after the segments exist (live path)
    after = {v: member_id() for v in before}
    await env.feed(*(enrolled(m, tier=v) for v, m in after.items()))

    def expected(condition: str, tier: str) -> bool:
        op_value = condition[len("tier ") :]
        if op_value.startswith("= "):
            return tier == parse(condition).value  # type: ignore[union-attr]
        if op_value.startswith("in "):
            return tier in {"50%", "a_b"}
        return str(parse(condition).value) in tier  # type: ignore[union-attr]

    for condition, segment_id in segments.items():
        rows = await env.sql(
            "SELECT member_id FROM segment_members WHERE segment_id = :s", s=segment_id
        )
        got = {r[0] for r in rows}
        for tiers in (before, after):
            want = {m for v, m in tiers.items() if expected(condition, v)}
            assert got & set(tiers.values()) == want, condition
        assert got, condition  # every condition matches someone
