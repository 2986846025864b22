"""Segmentation service benchmarks (issue 5), in one run; prints a table, writes bench/results/.

1. Consumer throughput: N order events produced to loyalty.points.events, then the
   real EventConsumer (batched, inbox + handlers) drains them; events/s.
   Run twice: with no tags/segments, and with 5 rule tags + 3 segments defined.
   Target >= 5,000 events/s.
2. Profile freshness: events produced at a steady rate while the consumer runs;
   latency = profile.updated_at (commit-side clock) - send time; p50/p95/max.
   Target p95 <= 5 s.
3. Full recompute for P synthetic profiles (default 1,000,000, BENCH_PROFILES)
   against one hand-written SQL pass doing the RFM work (cume_dist R/F/M, named
   segment, written to profiles). Target: the recompute's RFM-equivalent stages
   (member statistics -> ranks -> scores computed and written) <= 2x the hand-written
   pass (at the server's default settings; the recompute sets its own work_mem).
Embedded Postgres with durable settings and the Tansu broker (harness.infra()).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import PYTHON, ROOT, cpu_seconds, infra, process_tree, service_env, write_table

# This file is named like the service's package: take its folder off the import path so
# that `import segmentation` (here and in `python -m segmentation` below) is the service.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in {"", ".", _HERE}]

from aiokafka import AIOKafkaProducer  # noqa: E402
from sqlalchemy import text  # noqa: E402

from loyalty_shared.db import create_engine, create_sessionmaker  # noqa: E402
from loyalty_shared.kafka import ensure_topics  # noqa: E402
from loyalty_shared.testing import background, start_group_at_end  # noqa: E402
from loyalty_shared.topics import POINTS_EVENTS, all_topics  # noqa: E402
from segmentation.analytics.recompute import WORK_MEM, recompute  # noqa: E402
from segmentation.conditions.fields import RULE_TAG_FIELDS  # noqa: E402
from segmentation.conditions.language import parse, refresh_mode  # noqa: E402
from segmentation.settings import SegmentationSettings  # noqa: E402
from segmentation.testing_events import order  # noqa: E402
from segmentation.worker import build_consumer  # noqa: E402

EVENTS = int(os.environ.get("BENCH_EVENTS", "50000"))
PROFILES = int(os.environ.get("BENCH_PROFILES", "1000000"))
# BENCH_PARTS=recompute runs only the recompute at scale (its own results file)
PARTS = set(os.environ.get("BENCH_PARTS", "consumer,recompute").split(","))
FRESHNESS_EVENTS = int(os.environ.get("BENCH_FRESHNESS_EVENTS", "3000"))
FRESHNESS_RATE = float(os.environ.get("BENCH_FRESHNESS_RATE", "500"))  # events/s
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)

RULE_TAGS = [
    ("big", "total_spend > 500"),
    ("frequent", "order_count >= 5"),
    ("couponer", "coupon_share >= 0.5"),
    ("shoes", 'categories contains "shoes"'),
    ("app", 'channels contains "app"'),
]
SEGMENTS = [
    ("big buyers", 'tags contains "big" and order_count >= 2'),
    ("app shoes", 'channels contains "app" and categories contains "shoes"'),
    ("one timers", "order_count = 1"),
]


def _many_rule_tags(n: int = 200) -> list[tuple[str, str]]:
    """DOMAIN's "200+ tags": n live rule tags over the fields events change (thresholds on
    spend, orders, points, coupons; channels and categories), many of which the benchmark's
    members move in and out of as their orders arrive."""
    shapes = [
        lambda i: f"total_spend > {5 * i}",
        lambda i: f"order_count >= {1 + i % 7}",
        lambda i: f"points_balance >= {10 * i}",
        lambda i: f"coupon_share >= 0.{i % 10} and order_count > {i % 4}",
        lambda i: f'channels contains "{("app", "web", "store")[i % 3]}" and gross_spend > {i}',
        lambda i: f'categories contains "{("books", "shoes", "toys")[i % 3]}" or reviews > {i}',
        lambda i: f"average_order_value > {i % 90} and average_order_value <= {90 + i}",
    ]
    return [(f"t{i:03d}", shapes[i % len(shapes)](i)) for i in range(n)]


# 20 live segments as a marketing team defines them (audiences by channel, category,
# frequency, spend, coupons, points, engagement, tier), 7 of them on rule tags.
MANY_SEGMENTS = [
    ("app buyers", 'channels contains "app"'),
    ("web buyers", 'channels contains "web"'),
    ("store buyers", 'channels contains "store"'),
    ("one-timers", "order_count = 1"),
    ("repeaters", "order_count >= 2"),
    ("regulars", "order_count >= 5"),
    ("big spenders", "total_spend > 300"),
    ("very big spenders", "total_spend > 1000"),
    ("coupon lovers", "coupon_share >= 0.5 and order_count >= 2"),
    ("readers", 'categories contains "books"'),
    ("shoe lovers", 'categories contains "shoes"'),
    ("points rich", "points_balance >= 500"),
    ("reviewers", "reviews >= 1 or shares >= 1"),
    ("gold and up", 'tier in ["gold", "platinum", "diamond"]'),
    ("high basket", 'tags contains "t006" and order_count >= 2'),
    ("web regulars", 'tags contains "t004" and tags contains "t001"'),
    ("tagged a", 'tags contains "t050" or tags contains "t150"'),
    ("tagged b", 'tags contains "t021" and not channels contains "web"'),
    ("tagged c", 'tags contains "t100" and total_spend > 200'),
    ("tagged d", 'tags contains "t199" or tags contains "t075"'),
]


def _order_events(n: int, members: int, prefix: str) -> list[bytes]:
    out = []
    for i in range(n):
        m = f"{prefix}-{i % members}"
        day = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=7 * i)
        channel = "app" if i % 3 else "web"
        event = order(m, day.strftime("%Y-%m-%dT%H:%M"), f"{10 + i % 90}.00", channel=channel)
        out.append(event.to_json_bytes())
    return out


async def _produce(settings: SegmentationSettings, payloads: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(POINTS_EVENTS, v, key=k.encode()) for k, v in payloads]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _scalar(sessionmaker: Any, sql: str, **params: Any) -> int:
    async with sessionmaker() as s:
        return int((await s.execute(text(sql), params)).scalar_one())


async def _until(check: Any, interval: float = 0.05) -> None:
    while not await check():  # noqa: ASYNC110 - polling the database, not an in-process event
        await asyncio.sleep(interval)


# CPU metered during a drain, by process: this process (the consumer; a poll of its
# counts every 10 ms besides), Postgres (the postmaster and its backends), the broker
METERED: dict[str, Any] = {"consumer": lambda: [os.getpid()]}


@dataclass
class Rate:
    per_second: float
    cpu: dict[str, float]  # CPU seconds per event, by process

    def cell(self) -> str:
        cpu = ", ".join(f"{name} {secs * 1e6:,.0f}" for name, secs in self.cpu.items())
        return f"{self.per_second:,.0f} events/s (CPU µs/event: {cpu})"


async def throughput(
    settings: SegmentationSettings, sessionmaker: Any, prefix: str | None = None
) -> Rate:
    """Events/s of the service's consumer draining EVENTS order events (5 per member: new
    members, or those of an earlier run given its ``prefix``).

    The events are produced first; then a consumer with a new group, starting at the
    topic's end before they were produced, drains them. The clock runs from the first of
    these events in the inbox (database clock) to the moment the consumer has counted
    them all (its own counts, read every 10 ms: a count of the inbox took a third of a
    core from the consumer it measured), so the group join is not counted.
    """
    prefix = prefix or f"tp-{uuid.uuid4().hex[:6]}"
    members = max(EVENTS // 5, 1)
    raw = _order_events(EVENTS, members, prefix)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    consumer = build_consumer(settings, sessionmaker, group_id=group)
    # the group reads only this run's events, not every earlier run's again
    await start_group_at_end(settings, group, consumer.topics)
    await _produce(settings, [(f"{prefix}-{i % members}", v) for i, v in enumerate(raw)])
    async with sessionmaker() as s:
        mark = (await s.execute(text("SELECT clock_timestamp()"))).scalar_one()

    async def drained() -> bool:  # the consumer's own counts: polling the database would
        stats = consumer.stats  # take CPU from what it measures (a count of the inbox:
        return stats.processed + stats.duplicates >= EVENTS  # a third of a core)

    before = {name: cpu_seconds(pids()) for name, pids in METERED.items()}
    async with background(consumer.run):
        await _until(drained, 0.01)
        async with sessionmaker() as s:
            first, end = (
                await s.execute(
                    text(
                        "SELECT min(processed_at), clock_timestamp() FROM inbox "
                        "WHERE processed_at >= :mark"
                    ),
                    {"mark": mark},
                )
            ).one()
    used = {name: cpu_seconds(pids()) - before[name] for name, pids in METERED.items()}
    return Rate(EVENTS / (end - first).total_seconds(), {k: v / EVENTS for k, v in used.items()})


async def freshness(settings: SegmentationSettings, sessionmaker: Any) -> list[float]:
    prefix = f"fr-{uuid.uuid4().hex[:6]}"
    consumer = build_consumer(
        settings, sessionmaker, group_id=f"bench-fresh-{uuid.uuid4().hex[:8]}"
    )
    sent: dict[str, datetime] = {}
    count_sql = "SELECT count(*) FROM profiles WHERE member_id LIKE :p"
    async with background(consumer.run):
        # let the group join and skip through the topic's earlier events first
        marker = f"{prefix}-warmup"
        await _produce(settings, [(marker, order(marker, "2025-01-01", "1.00").to_json_bytes())])

        async def warm() -> bool:
            return await _scalar(sessionmaker, count_sql, p=marker) == 1

        await _until(warm)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            interval = 1.0 / FRESHNESS_RATE
            t0 = time.perf_counter()
            for i in range(FRESHNESS_EVENTS):
                m = f"{prefix}-{i}"
                payload = order(m, "2025-06-01", "25.00").to_json_bytes()
                sent[m] = datetime.now(UTC)
                await producer.send(POINTS_EVENTS, payload, key=m.encode())
                delay = t0 + (i + 1) * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.flush()
        finally:
            await producer.stop()

        async def all_there() -> bool:
            n = await _scalar(sessionmaker, count_sql, p=f"{prefix}-%")
            return n >= FRESHNESS_EVENTS + 1

        await _until(all_there, 0.1)
    async with sessionmaker() as s:
        rows = (
            await s.execute(
                text("SELECT member_id, updated_at FROM profiles WHERE member_id LIKE :p"),
                {"p": f"{prefix}-%"},
            )
        ).all()
    return sorted(
        (r.updated_at - sent[r.member_id]).total_seconds() for r in rows if r.member_id in sent
    )


_SYNTHETIC = """
INSERT INTO profiles (member_id, enrolled_at, tier)
SELECT 'p' || g, timestamptz '2023-01-01' + (g % 700) * interval '1 day', 'bronze'
FROM generate_series(1, :n) g;
INSERT INTO member_orders (order_id, member_id, amount, coupon_used, discount_amount, channel,
                           categories, occurred_at)
SELECT 'o' || g || '-' || k, 'p' || g, (10 + (g * 7 + k * 13) % 490)::numeric(16, 2),
       (g + k) % 4 = 0, 0, 'web', '{books}',
       timestamptz '2025-12-31' - ((g * 37 + k * 101) % 700) * interval '1 day'
           - ((g + k) % 1440) * interval '1 minute'
FROM generate_series(1, :n) g, generate_series(1, 1 + g % 5) k;
"""

_HAND_RFM = """
UPDATE profiles p SET rfm_r = s.r, rfm_f = s.f, rfm_m = s.m, rfm_segment = s.seg,
                      scores_as_of = CAST(:as_of AS timestamptz)
FROM (
    SELECT member_id, r, f, m,
           CASE WHEN r = 5 AND fm >= 4 THEN 'Champions'
                WHEN r = 5 AND fm >= 2 THEN 'Potential loyalist'
                WHEN r = 5 THEN 'New' WHEN r = 4 AND fm >= 4 THEN 'Loyal'
                WHEN r = 4 AND fm >= 2 THEN 'Potential loyalist' WHEN r = 4 THEN 'Promising'
                WHEN r = 3 AND fm >= 4 THEN 'Loyal' WHEN r = 3 AND fm = 3 THEN 'Needs attention'
                WHEN r = 3 THEN 'About to sleep' WHEN fm = 5 THEN 'Can''t lose them'
                WHEN fm >= 3 THEN 'At risk' WHEN r = 1 AND fm = 1 THEN 'Lost'
                ELSE 'Hibernating' END AS seg
    FROM (
        SELECT member_id, r, f, m, (f + m + 1) / 2 AS fm FROM (
            SELECT member_id,
                   CAST(ceil(5 * cume_dist() OVER (ORDER BY last_at)) AS int) AS r,
                   CAST(ceil(5 * cume_dist() OVER (ORDER BY n)) AS int) AS f,
                   CAST(ceil(5 * cume_dist() OVER (ORDER BY spend)) AS int) AS m
            FROM (
                SELECT o.member_id, max(o.occurred_at) AS last_at, count(*) AS n,
                       sum(o.amount - COALESCE(r.refunded, 0)) AS spend
                FROM member_orders o
                LEFT JOIN (SELECT order_id, sum(amount) AS refunded FROM order_refunds
                           WHERE occurred_at < CAST(:as_of AS timestamptz) GROUP BY order_id) r
                       ON r.order_id = o.order_id
                WHERE o.occurred_at < CAST(:as_of AS timestamptz)
                GROUP BY o.member_id
            ) t
        ) x
    ) y
) s WHERE p.member_id = s.member_id
"""


async def at_scale(
    settings: SegmentationSettings, sessionmaker: Any
) -> tuple[float, dict[str, float], float, float]:
    async with sessionmaker() as s, s.begin():
        await s.execute(text(f"TRUNCATE {', '.join(_TABLES)}"))
        for statement in _SYNTHETIC.strip().split(";\n"):
            if statement.strip():
                await s.execute(text(statement), {"n": PROFILES})
    async with sessionmaker() as s, s.begin():
        await s.execute(text("ANALYZE"))
    t0 = time.perf_counter()
    async with sessionmaker() as s, s.begin():
        await s.execute(text(_HAND_RFM), {"as_of": AS_OF})
    hand = time.perf_counter() - t0
    marks: list[tuple[str, float]] = []

    async def progress(_fraction: float, step: str) -> None:
        marks.append((step, time.perf_counter()))

    # a worker imports the model library once, at its first recompute: not measured here
    import lifetimes  # type: ignore[import-untyped]  # noqa: F401

    t0 = time.perf_counter()
    async with sessionmaker() as s, s.begin():
        await recompute(s, settings, AS_OF, progress)
        marks.append(("commit", time.perf_counter()))
    total = time.perf_counter() - t0
    # For transparency only: the same hand-written pass with the recompute's work_mem
    # (after the recompute, on the table it rewrote; rolled back).
    t1 = time.perf_counter()
    async with sessionmaker() as s:
        await s.begin()
        await s.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        await s.execute(text(_HAND_RFM), {"as_of": AS_OF})
        hand_same_memory = time.perf_counter() - t1
        await s.rollback()
    steps: dict[str, float] = {}
    prev_name, prev_t = "start", t0
    for name, t in marks:
        steps[prev_name] = t - prev_t
        prev_name, prev_t = name, t
    return hand, steps, total, hand_same_memory


_TABLES = (
    "profiles",
    "member_orders",
    "order_refunds",
    "member_activities",
    "segment_members",
    "segment_history",
    "segments",
    "tags",
)
_RFM_STEPS = {"start", "member statistics", "ranks", "writing scores"}


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


async def _define_tags_and_segments(
    sessionmaker: Any,
    tags: list[tuple[str, str]] = RULE_TAGS,
    segments: list[tuple[str, str]] = SEGMENTS,
) -> None:
    """Replace the definitions (each live: every condition here uses event fields)."""
    async with sessionmaker() as s, s.begin():
        await s.execute(text("DELETE FROM tags"))
        await s.execute(text("DELETE FROM segments"))
        for name, cond in tags:
            assert refresh_mode(parse(cond, allowed=RULE_TAG_FIELDS)) == "live", cond
            await s.execute(
                text("INSERT INTO tags (name, kind, condition) VALUES (:n, 'rule', :c)"),
                {"n": name, "c": cond},
            )
        for i, (name, cond) in enumerate(segments):
            assert refresh_mode(parse(cond)) == "live", cond
            await s.execute(
                text(
                    "INSERT INTO segments (segment_id, name, condition, refresh_mode) "
                    "VALUES (:i, :n, :c, 'live')"
                ),
                {"i": f"seg{i:02d}", "n": name, "c": cond},
            )


async def _many_definitions(
    settings: SegmentationSettings, sessionmaker: Any, target: str
) -> list[list[str]]:
    """The consumer with DOMAIN's 200 rule tags and 20 live segments: new members' first
    5 orders, then 5 more orders of the same members; with the membership changes per
    event each wrote (a history row and an entered/left event each)."""
    await _define_tags_and_segments(sessionmaker, _many_rule_tags(), MANY_SEGMENTS)
    prefix = f"tp-{uuid.uuid4().hex[:6]}"
    rows = []
    for who in ("new members", "returning members"):
        changes = "SELECT count(*) FROM segment_history"
        before = await _scalar(sessionmaker, changes)
        rate = await throughput(settings, sessionmaker, prefix)
        per_event = (await _scalar(sessionmaker, changes) - before) / EVENTS
        rows.append(
            [
                f"consumer, 200 rule tags + 20 live segments, {who} ({per_event:.2f} "
                "membership changes per event)",
                rate.cell(),
                target,
                _met(rate.per_second >= 5000),
            ]
        )
    return rows


async def _consumer_rows(settings: SegmentationSettings, sessionmaker: Any) -> list[list[str]]:
    rows: list[list[str]] = []
    target = ">= 5,000 events/s"
    rate = await throughput(settings, sessionmaker)
    rows.append(["consumer, no tags/segments", rate.cell(), target, _met(rate.per_second >= 5000)])
    await _define_tags_and_segments(sessionmaker)
    rate = await throughput(settings, sessionmaker)
    rows.append(
        [
            "consumer, 5 rule tags + 3 segments",
            rate.cell(),
            target,
            _met(rate.per_second >= 5000),
        ]
    )
    rows += await _many_definitions(settings, sessionmaker, target)
    await _define_tags_and_segments(sessionmaker)  # freshness as before: 5 tags + 3
    lat = await freshness(settings, sessionmaker)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    rows.append(
        [
            f"profile freshness ({FRESHNESS_EVENTS} events at {FRESHNESS_RATE:.0f}/s)",
            f"p50 {pct(0.5):.3f} s, p95 {pct(0.95):.3f} s, max {lat[-1]:.3f} s",
            "p95 <= 5 s",
            _met(pct(0.95) <= 5),
        ]
    )
    return rows


_CONSUMER_NOTES = (
    "Consumer: the service's defaults, two lanes (consumer_concurrency: partition number "
    "mod 2, a transaction each, at once) of up to 1,000 events per poll "
    "(consumer_batch_size); the live rule tags and segments are evaluated once per batch "
    "for its members (two statements), every membership change is written to "
    "segment_members, segment_history and the outbox (about 70 µs of Postgres CPU each: "
    "three rows, nine index entries, a JSON payload), so the new members' row, with 2.34 "
    "changes per event, is bound by those writes. CPU per event: this process (the "
    "consumer), Postgres (all its processes), the broker, from /proc during the drain. "
    "The 200 rule tags (bench: _many_rule_tags) are "
    "thresholds on spend, orders, points, coupon share, basket and channel/category "
    "tests; the 20 segments (MANY_SEGMENTS) are audiences by channel, category, "
    "frequency, spend, coupons, points, engagement and tier, 7 of them on rule tags. "
    "In the first run every member is new and places 5 orders, so it enters and "
    "leaves several segments (one-timers, repeaters, regulars, spenders...): the "
    "busiest time of a membership; in the second the same members place 5 more. "
    "Freshness: profiles.updated_at (clock_timestamp() "
    "in the consuming transaction) minus the producer's send time, same machine clock. "
    "The recompute at scale: bench/results/segmentation-recompute.md (BENCH_PARTS=recompute)."
)

_RECOMPUTE_NOTES = (
    "The recompute's RFM-equivalent stages (start, member statistics, ranks, writing "
    "scores) also compute the value tier, lifecycle, median gaps, 365-day windows, "
    "groups, loyalty indicators, index, type and reasons, and write all of them; "
    "publishing the score changes (value tier, lifecycle stage, churn-risk level: up to "
    "three events per member on a first recompute) is the separate 'score change "
    "events' step. The reference is the hand-written pass above at the server's default "
    "settings, run first, on the freshly loaded data; the recompute runs next and sets "
    f"work_mem to {WORK_MEM} for its transaction (the information row runs the reference "
    "with that work_mem too, after the recompute)."
)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


class _Load:
    """The machine's 1-minute load average, sampled every 5 s while a part runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            await asyncio.sleep(5)

    def __enter__(self) -> _Load:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def line(self) -> str:
        s = self.samples or [os.getloadavg()[0]]
        return f"load average (1 min) during the run: min {min(s):.1f}, max {max(s):.1f}"


async def _recompute_rows(
    settings: SegmentationSettings, sessionmaker: Any
) -> tuple[list[list[str]], str]:
    with _Load() as load:
        hand, steps, total, hand_same_memory = await at_scale(settings, sessionmaker)
    rfm = sum(v for k, v in steps.items() if k in _RFM_STEPS)
    n = f"{PROFILES:,} profiles"
    rows = [
        [f"hand-written RFM pass, {n}", f"{hand:.1f} s", "reference", ""],
        [
            f"recompute RFM-equivalent stages, {n}",
            f"{rfm:.1f} s ({rfm / hand:.2f}x)",
            "<= 2x reference",
            _met(rfm <= 2 * hand),
        ],
        [
            f"full recompute (RFM, tiers, lifecycle, loyalty, CLV fit and predictions, "
            f"score change events, strategies, segments), {n}",
            f"{total:.1f} s",
            "<= 90 s",
            _met(total <= 90),
        ],
        [
            f"hand-written RFM pass with work_mem {WORK_MEM} (information), {n}",
            f"{hand_same_memory:.1f} s (recompute stages {rfm / hand_same_memory:.2f}x)",
            "",
            "",
        ],
    ]
    detail = ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())
    return rows, f"Recompute steps: {detail}.\n\n{load.line()}."


async def run(settings: SegmentationSettings) -> None:
    await ensure_topics(settings, all_topics())
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    note = f"\n\n{os.environ['BENCH_NOTE']}" if os.environ.get("BENCH_NOTE") else ""
    try:
        if "consumer" in PARTS:
            started = _uptime()
            with _Load() as load:
                rows = await _consumer_rows(settings, sessionmaker)
            machine = (
                f"\n\nThe {load.line()}; uptime at the start `{started}`, at the end `{_uptime()}`."
            )
            write_table(
                "segmentation",
                "Segmentation service: consumer throughput and freshness",
                ["case", "result", "target", "met"],
                rows,
                _CONSUMER_NOTES + machine + note,
            )
        if "recompute" in PARTS:
            rows, detail = await _recompute_rows(settings, sessionmaker)
            write_table(
                "segmentation-recompute",
                "Segmentation service: the full recompute at scale",
                ["case", "result", "target", "met"],
                rows,
                f"{detail}\n\n{_RECOMPUTE_NOTES}{note}",
            )
    finally:
        await engine.dispose()


def main() -> None:
    with infra() as inf:
        inf.postgres.create_database("bench_segmentation")
        env = service_env("SEGMENTATION", inf, "bench_segmentation", 0)
        subprocess.run(
            [PYTHON, "-m", "segmentation", "migrate"],
            env={**os.environ, **env},
            cwd=ROOT,
            check=True,
            timeout=600,  # a few seconds; minutes on a machine shared at load 10 or more
        )
        pg_pid = int((inf.postgres.pgdata / "postmaster.pid").read_text().split()[0])
        METERED["Postgres"] = lambda: process_tree(pg_pid)
        METERED["broker"] = lambda: [inf.broker.pid] if inf.broker.pid else []
        settings = SegmentationSettings(
            environment="dev",
            database_url=env["SEGMENTATION_DATABASE_URL"],
            kafka_bootstrap=env["SEGMENTATION_KAFKA_BOOTSTRAP"],
            kafka_idempotent_producer=False,
            log_level="WARNING",
        )
        asyncio.run(run(settings))


if __name__ == "__main__":
    main()
