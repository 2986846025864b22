"""The fault suite: steady checkouts through the gateway while things break.

A stack of real processes (``Stack``, two replicas of every API and worker) takes a paced
stream of orders, the way storefronts send them: an order that fails (a refused
connection, a 5xx, a timeout) is sent again with the same order id, which points answers
idempotently. While the load runs, one fault is injected at a time:

- a points API replica is killed (SIGKILL) mid-load, and started again;
- a segmentation worker (its consumer) is killed mid-batch: its partitions go to the other
  replica, which reads them again from the last commit;
- the points relay's leader is killed: the other worker takes the relay over;
- the broker stops for a while and starts again (empty: the relays publish again);
- Postgres restarts;
- a points API replica hangs (SIGSTOP) long enough for the gateway's timeouts, health
  checks and breaker to act, then goes on (SIGCONT);
- events already delivered are sent again, newest first (duplicates, out of order).

After each fault the load stops, the pipeline drains (``/v1/ops/pipeline``: no backlog,
no lag), and the books are checked: every accepted order is in points exactly once and
credited once (each member's lifetime points equal the points its orders earned;
``/v1/ops/ledger/verify`` finds no drift), segmentation and feedback applied each order
exactly once (their per-member counts and sums equal points'), and no dead letter is
open. ``bench/faults.py`` runs it at length and writes ``bench/results/faults.md``;
``tests/test_faults.py`` runs a short version in ``make test``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from loyalty_shared.devstack.stack import DEV_KEYS, Stack
from loyalty_shared.events import CloudEvent
from loyalty_shared.kafka import make_producer
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import POINTS_EVENTS

ADMIN = {"Authorization": f"Bearer {DEV_KEYS['admin']}"}
STOREFRONT = {"Authorization": f"Bearer {DEV_KEYS['storefront']}"}

# a storefront retries an order until it is answered, for as long as this
RETRY_FOR_SECONDS = 60.0


@dataclass
class Order:
    order_id: str
    member_id: str
    amount: Decimal
    statuses: list[str] = field(default_factory=list)
    accepted: bool = False


@dataclass
class Durations:
    """How long each phase lasts (the bench's run and the test's short one)."""

    load_seconds: float = 20.0
    rate_per_second: float = 20.0
    broker_down_seconds: float = 30.0
    hang_seconds: float = 15.0
    restart_after_seconds: float = 3.0
    drain_timeout_seconds: float = 180.0


@dataclass
class FaultRow:
    fault: str
    requests: int
    accepted: int
    failed: Counter[str]
    lost: int
    duplicate_effects: int
    recovery_seconds: float
    problems: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        failed = ", ".join(f"{status}: {n}" for status, n in sorted(self.failed.items())) or "0"
        return [
            self.fault,
            str(self.requests),
            str(self.accepted),
            failed,
            str(self.lost),
            str(self.duplicate_effects),
            f"{self.recovery_seconds:.1f}",
        ]


COLUMNS = [
    "fault",
    "requests",
    "accepted",
    "failed (statuses)",
    "lost",
    "duplicate effects",
    "recovery s",
]


def _status(response: httpx.Response) -> str:
    """``503`` or, for a problem, ``503 circuit-open`` (which part of the platform said it)."""
    if response.status_code < 400:
        return str(response.status_code)
    try:
        slug = str(response.json().get("type", "")).rsplit("/", 1)[-1]
    except ValueError:
        slug = ""
    return f"{response.status_code} {slug}".strip()


class Storefront:
    """Paced orders over a fixed set of members, each retried until it is answered."""

    def __init__(self, client: httpx.AsyncClient, members: list[str]) -> None:
        self.client = client
        self.members = members
        self.orders: list[Order] = []
        self.requests = 0
        self.last_failure = 0.0  # time.monotonic() of the latest failed attempt

    async def enrol(self) -> None:
        for member in self.members:
            response = await self.client.post(
                "/v1/members", json={"member_id": member}, headers=STOREFRONT
            )
            response.raise_for_status()

    async def run(self, seconds: float, rate: float) -> list[Order]:
        """Start ``rate`` orders a second for ``seconds``; returns when all are answered."""
        batch: list[Order] = []
        tasks = []
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            order = Order(
                order_id=f"o-{uuid.uuid4().hex[:16]}",
                member_id=self.members[n % len(self.members)],
                amount=Decimal(10 + n % 90),
            )
            batch.append(order)
            tasks.append(asyncio.create_task(self._send(order)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        await asyncio.gather(*tasks)
        self.orders += batch
        return batch

    async def _send(self, order: Order) -> None:
        body = {
            "order_id": order.order_id,
            "member_id": order.member_id,
            "amount": str(order.amount),
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        deadline = time.monotonic() + RETRY_FOR_SECONDS
        delay = 0.2
        while True:
            self.requests += 1
            try:
                response = await self.client.post("/v1/orders", json=body, headers=STOREFRONT)
                status = _status(response)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            else:
                if response.status_code in (200, 201):
                    order.accepted = True
                    return
                if response.status_code < 500 and response.status_code != 429:
                    order.statuses.append(status)
                    return  # refused for good: the storefront would not send it again
            order.statuses.append(status)
            self.last_failure = time.monotonic()
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class Books:
    """Reads every service's database to check what the orders left there."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    async def _fetch(self, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        url = self.stack.postgres.url(self.stack.database_name(service))
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def check(self, orders: list[Order]) -> tuple[int, int, list[str]]:
        """(lost, duplicate effects, problems) over every order sent so far. Lost: an
        accepted order missing in points, or an order of points missing in a consumer's
        books; a duplicate effect: a credit or a consumer's count above points' own."""
        accepted = [o.order_id for o in orders if o.accepted]
        members = sorted({o.member_id for o in orders})
        rows = await self._fetch(
            "points", "SELECT order_id FROM orders WHERE order_id = ANY($1)", accepted
        )
        lost = len(set(accepted) - {r["order_id"] for r in rows})
        points = {
            r["member_id"]: r
            for r in await self._fetch(
                "points",
                "SELECT o.member_id, count(*) AS n, sum(o.amount) AS spend, "
                "sum(o.points_earned) AS earned, b.lifetime_earned FROM orders o "
                "JOIN balances b USING (member_id) WHERE o.member_id = ANY($1) "
                "GROUP BY o.member_id, b.lifetime_earned",
                members,
            )
        }
        seen = await self._consumers(members)
        problems: list[str] = []
        duplicates = 0
        for member, row in points.items():
            counts = {
                "points credit": (row["lifetime_earned"], row["earned"]),
                "segmentation orders": (seen["orders"].get(member, 0), row["n"]),
                "segmentation spend": (seen["spend"].get(member, 0), row["spend"]),
                "feedback orders": (seen["facts"].get(member, 0), row["n"]),
            }
            for what, (got, want) in counts.items():
                if got != want:
                    problems.append(f"{what} of {member}: {got}, points says {want}")
                    duplicates += got > want
                    lost += got < want
        return lost, duplicates, problems

    async def _consumers(self, members: list[str]) -> dict[str, dict[str, Any]]:
        profiles = await self._fetch(
            "segmentation",
            "SELECT member_id, order_count, total_spend FROM profiles WHERE member_id = ANY($1)",
            members,
        )
        facts = await self._fetch(
            "feedback",
            "SELECT member_id, count(*) AS n FROM order_facts WHERE member_id = ANY($1) "
            "GROUP BY member_id",
            members,
        )
        return {
            "orders": {r["member_id"]: r["order_count"] for r in profiles},
            "spend": {r["member_id"]: r["total_spend"] for r in profiles},
            "facts": {r["member_id"]: r["n"] for r in facts},
        }


async def drained(client: httpx.AsyncClient, timeout: float) -> float:
    """Seconds until every service answers with no outbox backlog and no consumer lag."""
    started = time.monotonic()
    report: Any = None
    while True:
        try:
            report = (await client.get("/v1/ops/pipeline", headers=ADMIN)).json()
            parts = report.get("services", {}).values()
            answered = all("outbox" in p and "error" not in p.get("consumer", {}) for p in parts)
            totals = report.get("totals", {})
            if answered and totals.get("outbox_backlog") == 0 and totals.get("consumer_lag") == 0:
                return time.monotonic() - started
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the pipeline did not drain within {timeout:.0f}s: {report}")
        await asyncio.sleep(0.5)


async def settled(
    client: httpx.AsyncClient, books: Books, orders: list[Order], timeout: float
) -> tuple[float, int, int, list[str]]:
    """Drain, then wait until the consumers' books agree with points' (or time runs out)."""
    started = time.monotonic()
    await drained(client, timeout)
    while True:
        lost, duplicates, problems = await books.check(orders)
        if not problems or time.monotonic() - started > timeout:
            return time.monotonic() - started, lost, duplicates, problems
        await asyncio.sleep(0.5)


async def ledger_and_dead_letters(client: httpx.AsyncClient) -> list[str]:
    problems = []
    verify = await client.get("/v1/ops/ledger/verify", headers=ADMIN)
    report = verify.json() if verify.status_code == 200 else {"error": verify.text}
    if verify.status_code != 200 or report.get("drift_count"):
        problems.append(f"ledger drift: {str(report)[:300]}")
    dead = await client.get("/v1/ops/dead-letters", headers=ADMIN)
    items = dead.json().get("items", []) if dead.status_code == 200 else ["unreadable"]
    if items:
        problems.append(f"dead letters: {str(items)[:300]}")
    return problems


# -- the faults ------------------------------------------------------------------------------

Fault = Callable[[Stack, Durations], Awaitable[None]]


async def _kill_and_respawn(stack: Stack, name: str, after: float) -> None:
    stack.signal(name, signal.SIGKILL)
    await asyncio.to_thread(stack.process(name).wait)
    await asyncio.sleep(after)
    stack.respawn(name)


async def kill_points_api(stack: Stack, d: Durations) -> None:
    await _kill_and_respawn(
        stack, stack.config.process_name("points", "api", 0), d.restart_after_seconds
    )


async def kill_segmentation_consumer(stack: Stack, d: Durations) -> None:
    name = stack.config.process_name("segmentation", "worker", 0)
    await _kill_and_respawn(stack, name, d.restart_after_seconds)


async def relay_leader(stack: Stack) -> str:
    """The points worker whose relay holds the outbox's advisory lock."""
    url = stack.postgres.url(stack.database_name("points"))
    conn = await asyncpg.connect(url)
    try:
        holder = await conn.fetchval(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND "
            "((l.classid::bigint << 32) | l.objid::bigint) = hashtext($1)::bigint",
            "loyalty_outbox_relay:points",
        )
    finally:
        await conn.close()
    pid = int(str(holder).rsplit(":", 1)[1]) if holder else None
    for name, proc in stack.procs:
        if proc.pid == pid:
            return name
    raise LookupError(f"no process of the stack holds the points relay ({holder})")


async def kill_relay_leader(stack: Stack, d: Durations) -> None:
    await _kill_and_respawn(stack, await relay_leader(stack), d.restart_after_seconds)


async def broker_outage(stack: Stack, d: Durations) -> None:
    await asyncio.to_thread(stack.broker.stop)
    await asyncio.sleep(d.broker_down_seconds)
    await asyncio.to_thread(stack.broker.start)


async def postgres_restart(stack: Stack, d: Durations) -> None:
    started = time.monotonic()
    await asyncio.to_thread(stack.postgres.stop)
    stopped = time.monotonic()
    await asyncio.to_thread(stack.postgres.start)
    await asyncio.to_thread(stack.postgres.wait_ready)
    print(
        f"[faults] Postgres stopped in {stopped - started:.1f} s, "
        f"back in {time.monotonic() - stopped:.1f} s",
        file=sys.stderr,
        flush=True,
    )


async def hung_upstream(stack: Stack, d: Durations) -> None:
    name = stack.config.process_name("points", "api", 0)
    stack.signal(name, signal.SIGSTOP)
    try:
        await asyncio.sleep(d.hang_seconds)
    finally:
        stack.signal(name, signal.SIGCONT)


async def redelivery(stack: Stack, d: Durations) -> None:
    """Points' last delivered events, sent again newest first."""
    url = stack.postgres.url(stack.database_name("points"))
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT key, payload::text AS payload FROM outbox WHERE sent_at IS NOT NULL "
            "ORDER BY id DESC LIMIT 200"
        )
    finally:
        await conn.close()
    settings = CommonSettings(
        kafka_bootstrap=stack.broker.bootstrap, kafka_idempotent_producer=False
    )
    producer = make_producer(settings, client_id="fault-redelivery")
    await producer.start()
    try:
        for row in rows:
            CloudEvent.model_validate_json(row["payload"])  # only real events
            await producer.send_and_wait(
                POINTS_EVENTS, row["payload"].encode(), key=row["key"].encode()
            )
    finally:
        await producer.stop()


FAULTS: dict[str, Fault] = {
    "kill -9 a points API replica": kill_points_api,
    "kill -9 a segmentation consumer mid-batch": kill_segmentation_consumer,
    "kill -9 the points relay leader": kill_relay_leader,
    "broker down, then back (empty)": broker_outage,
    "Postgres restart": postgres_restart,
    "a points API replica hangs (SIGSTOP)": hung_upstream,
    "duplicate and out-of-order delivery": redelivery,
}


async def run_suite(
    stack: Stack, durations: Durations, members: int = 40, only: list[str] | None = None
) -> list[FaultRow]:
    """Every fault in turn under load; one row each."""
    rows = []
    async with httpx.AsyncClient(base_url=stack.gateway_url(), timeout=30) as client:
        store = Storefront(client, [f"m-fault-{uuid.uuid4().hex[:6]}-{i}" for i in range(members)])
        await store.enrol()
        books = Books(stack)
        for name, fault in FAULTS.items():
            if only and name not in only:
                continue
            rows.append(await _one(stack, durations, client, store, books, name, fault))
    return rows


async def _one(
    stack: Stack,
    d: Durations,
    client: httpx.AsyncClient,
    store: Storefront,
    books: Books,
    name: str,
    fault: Fault,
) -> FaultRow:
    requests_before = store.requests
    load = asyncio.create_task(store.run(d.load_seconds, d.rate_per_second))
    await asyncio.sleep(d.load_seconds / 4)
    await fault(stack, d)
    ended = time.monotonic()
    batch = await load
    _, lost, duplicates, problems = await settled(
        client, books, store.orders, d.drain_timeout_seconds
    )
    recovery = time.monotonic() - ended
    if store.last_failure > ended:
        print(
            f"[faults] {name}: the last failed call {store.last_failure - ended:.1f} s after "
            "the fault ended",
            file=sys.stderr,
            flush=True,
        )
    problems += await ledger_and_dead_letters(client)
    failed: Counter[str] = Counter(s for o in batch for s in o.statuses)
    return FaultRow(
        fault=name,
        requests=store.requests - requests_before,
        accepted=sum(o.accepted for o in batch),
        failed=failed,
        lost=lost,
        duplicate_effects=duplicates,
        recovery_seconds=recovery,
        problems=problems,
    )
