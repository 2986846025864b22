"""Live and batch refresh agree: random conditions over random profiles (hypothesis, real Postgres).

The live refresh (``segments.live``: SQL text with the literals inlined, run for the members
an event touched) and the batch refresh (``segments.batch``: bound parameters, over every
profile) are two renderings of one condition. For random conditions (every operator, nested
and/or/not, literals with ``%``, ``_``, quotes, backslashes, colons, numbers compared with
integer, numeric and float columns) over random profiles, the members the live refresh puts
in a segment or gives a rule tag are exactly those the batch refresh finds, and a batch
refresh after the live one changes nothing. Each example runs in a transaction that is
rolled back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from loyalty_shared.testing import Infra, migrated_database
from segmentation.conditions.compile import compiled
from segmentation.conditions.fields import LIFECYCLES, VALUE_TIERS
from segmentation.conditions.language import parse
from segmentation.profiles.models import Profile
from segmentation.segments.batch import refresh_all
from segmentation.segments.expressions import rule_tags_expr
from segmentation.segments.live import refresh_members
from segmentation.segments.models import Segment, SegmentMember, Tag
from segmentation.settings import SegmentationSettings
from segmentation.testing import SERVICE_DIR

P = Profile.__table__.c

# texts a client may send: LIKE wildcards, quotes, backslashes, colons, case, accents
WORDS = ["50%", "%", "_", "a_b", "it's", 'say "hi"', "back\\slash", "x:y", "::", "Gold", "gold"]
WORDS += ["", "ümlaut", "%_%", "\\'", "a\nb", "{x}"]
word = st.one_of(
    st.sampled_from(WORDS),
    st.text(alphabet="ab%_'\"\\:{} ", max_size=6),
)
maybe_time = st.none() | st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2025, 12, 31), timezones=st.just(UTC)
)


@st.composite
def profile(draw: st.DrawFn, texts: list[str]) -> dict[str, Any]:
    """A profile whose texts come from a small pool the example's conditions draw from too."""
    text_ = st.sampled_from(texts)
    some = st.lists(text_, max_size=3, unique=True)
    orders = draw(st.integers(0, 4))
    return {
        "order_count": orders,
        "coupon_order_count": draw(st.integers(0, orders)),
        "total_spend": draw(st.decimals(-50, 500, places=2)),
        "points_balance": draw(st.integers(-10, 10**12)),
        "csat_count": draw(st.integers(0, 3)),
        "csat_sum": draw(st.decimals(0, 15, places=2)),
        "nps_last": draw(st.none() | st.integers(0, 10)),
        "median_gap_days": draw(st.none() | st.floats(0, 100, allow_nan=False)),
        "loyalty_index": draw(st.none() | st.floats(0, 100, allow_nan=False)),
        "tier": draw(st.none() | text_),
        "timezone": draw(st.none() | text_),
        "value_tier": draw(st.none() | st.sampled_from(VALUE_TIERS)),
        "lifecycle": draw(st.none() | st.sampled_from(LIFECYCLES)),
        "last_order_at": draw(maybe_time),
        "enrolled_at": draw(maybe_time),
        "categories": draw(some),
        "channels": draw(some),
        "manual_tags": draw(some),
        "strategies": draw(some),
    }


def quoted(value: str, quote: str) -> str:
    return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def substrings(values: list[str]) -> st.SearchStrategy[str]:
    """Pieces of the profiles' own texts (a "%" of "50%"), so that contains often matches."""
    return st.sampled_from(values).flatmap(
        lambda v: st.tuples(st.integers(0, len(v)), st.integers(0, len(v))).map(
            lambda ij: v[min(ij) : max(ij)]
        )
    )


def string_literal(seen: list[str], choices: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """A quoted text: mostly one the profiles hold (so that = and in match), else any."""
    values = (
        st.sampled_from(choices) if choices else st.sampled_from(seen) | substrings(seen) | word
    )
    return st.builds(quoted, values, st.sampled_from(['"', "'"]))


def number_literal(seen: list[str]) -> st.SearchStrategy[str]:
    """A number, bare or quoted: mostly one the profiles hold or half a unit off it."""
    number = st.one_of(
        st.sampled_from(seen),
        st.sampled_from(seen).map(lambda v: v + ".5" if "." not in v else v + "1"),
        st.integers(-5, 20).map(str),
        st.sampled_from(["1.5", "0.25", "-0", "99999999999999999999", "4.999"]),
    )
    return number.flatmap(lambda n: st.sampled_from([n, quoted(n, '"'), quoted(n, "'")]))


time_literal = st.datetimes(
    min_value=datetime(2024, 1, 1),
    max_value=datetime(2025, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]),
).map(lambda at: quoted(at.isoformat(), '"'))

NUMBERS = ["order_count", "total_spend", "points_balance", "nps_last", "median_gap_days"]
NUMBERS += ["loyalty_index", "average_order_value", "coupon_share", "days_since_last_order"]
NUMBERS += ["csat_avg"]  # with the other two, the fields the live refresh computes once
STRINGS = {"tier": (), "timezone": (), "value_tier": VALUE_TIERS, "lifecycle": LIFECYCLES}
TIMES = ["last_order_at", "enrolled_at"]
LISTS = ["categories", "channels", "manual_tags", "tags", "strategies"]
NULLABLE = ["tier", "nps_last", "median_gap_days", "last_order_at", "average_order_value"]
NULLABLE += ["coupon_share", "csat_avg"]


@st.composite
def comparison(draw: st.DrawFn, lists: list[str], texts: list[str], numbers: list[str]) -> str:
    kind = draw(st.sampled_from(["number", "string", "time", "list", "null"]))
    if kind == "null":
        field = draw(st.sampled_from(NULLABLE))
        return f"{field} is {draw(st.sampled_from(['', 'not ']))}null"
    if kind == "list":
        return f"{draw(st.sampled_from(lists))} contains {draw(string_literal(texts))}"
    if kind == "number":
        field, literal = draw(st.sampled_from(NUMBERS)), number_literal(numbers)
        ops = ["=", "!=", ">", ">=", "<", "<=", "in"]
    elif kind == "time":
        field, literal = draw(st.sampled_from(TIMES)), time_literal
        ops = ["=", "!=", ">", ">=", "<", "<=", "in"]
    else:
        field = draw(st.sampled_from(sorted(STRINGS)))
        literal, ops = string_literal(texts, STRINGS[field]), ["=", "!=", "in", "contains"]
    op = draw(st.sampled_from(ops))
    if op == "in":
        items = draw(st.lists(literal, min_size=1, max_size=3))
        return f"{field} in [{', '.join(items)}]"
    return f"{field} {op} {draw(literal)}"


def condition(lists: list[str], texts: list[str], numbers: list[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        comparison(lists, texts, numbers),
        lambda inner: st.one_of(
            st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
            st.builds(lambda a, b: f"{a} or {b}", inner, inner),
            st.builds(lambda a: f"not ({a})", inner),
        ),
        max_leaves=6,
    )


# a rule tag has no "manual_tags" field ("tags" means the manual tags there: fields.py)
RULE_LISTS = ["categories", "channels", "strategies", "tags"]


@st.composite
def case(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    texts = draw(st.lists(word, min_size=1, max_size=4, unique=True))
    drawn = draw(st.lists(profile(texts), min_size=1, max_size=6))
    # each example is rolled back: the same ids every time
    profiles = [{"member_id": f"m{i}", **p} for i, p in enumerate(drawn)]
    numbers = sorted(
        {str(p[f]) for p in profiles for f in ("order_count", "total_spend", "points_balance")}
    )
    rule_tags = draw(st.lists(condition(RULE_LISTS, texts, numbers), min_size=1, max_size=2))
    segments = draw(st.lists(condition(LISTS, texts, numbers), min_size=1, max_size=3))
    return profiles, rule_tags, segments


async def _agree(
    session: AsyncSession, profiles: list[dict[str, Any]], rule_tags: list[str], segments: list[str]
) -> None:
    await session.execute(insert(Profile), profiles)
    tags = [(f"rule{i}", c) for i, c in enumerate(rule_tags)]
    for name, cond in tags:
        session.add(Tag(name=name, kind="rule", condition=cond))
    ids = [f"seg_{i}" for i in range(len(segments))]
    for segment_id, cond in zip(ids, segments, strict=True):
        session.add(
            Segment(segment_id=segment_id, name=segment_id, condition=cond, refresh_mode="live")
        )
    await session.flush()
    members = [p["member_id"] for p in profiles]

    await refresh_members(session, members, "test")  # the live path
    live_tags = dict((await session.execute(select(P.member_id, P.rule_tags))).all())
    live_members = set(
        (await session.execute(select(SegmentMember.segment_id, SegmentMember.member_id))).all()
    )

    batch = await session.execute(select(P.member_id, rule_tags_expr(tags)))
    batch_tags: dict[str, list[str]] = {row[0]: row[1] for row in batch.all()}
    assert {m: sorted(t) for m, t in live_tags.items()} == {
        m: sorted(t) for m, t in batch_tags.items()
    }, tags
    for segment_id, cond in zip(ids, segments, strict=True):
        found = set((await session.execute(select(P.member_id).where(compiled(cond)[1]))).scalars())
        assert {m for s, m in live_members if s == segment_id} == found, cond

    changes = await refresh_all(session, "test")  # the batch path: nothing left to change
    assert all(c == {"entered": 0, "left": 0} for c in changes.values()), changes
    after = dict((await session.execute(select(P.member_id, P.rule_tags))).all())
    assert after == live_tags


PROFILES = {"ci": 60, "nightly": 1000}


@pytest.fixture(scope="module")
async def agreement_db(infra: Infra) -> str:
    return await migrated_database(infra, "segmentation_agreement", SERVICE_DIR)


@pytest.fixture
def engine(
    agreement_db: str, segmentation_settings: SegmentationSettings
) -> Iterator[tuple[asyncio.Runner, AsyncEngine]]:
    config = segmentation_settings.model_copy(update={"database_url": agreement_db})
    with asyncio.Runner() as runner:
        engine = create_async_engine(config.sqlalchemy_url(), pool_size=1)
        try:
            yield runner, engine
        finally:
            runner.run(engine.dispose())


@settings(
    max_examples=PROFILES.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), 60),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(example=case())
def test_live_and_batch_refresh_agree(
    engine: tuple[asyncio.Runner, AsyncEngine],
    example: tuple[list[dict[str, Any]], list[str], list[str]],
) -> None:
    runner, db = engine
    profiles, rule_tags, segments = example
    for cond in rule_tags + segments:
        parse(cond)  # every generated condition is valid

    async def run() -> None:
        async with async_sessionmaker(db, expire_on_commit=False)() as session:
            await session.begin()  # now() (days_since_*) is one instant for both paths
            try:
                await _agree(session, profiles, rule_tags, segments)
            finally:
                await session.rollback()

    runner.run(run())
