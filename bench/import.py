"""History import through the gateway: orders/s, the profiles' catch-up, CPU per order.

The whole `make run` stack (real processes: the gateway, each service's API and worker
with its relay and consumers, embedded Postgres, the broker) on this machine. A seeded
synthetic history (BENCH_IMPORT_ORDERS, default 100,000 orders over BENCH_IMPORT_MEMBERS,
default 20,000 members, over two years; a third of the orders with items in categories;
BENCH_IMPORT_REFUNDS, default 2%, refunded in part later) goes through
``POST /v1/orders/batch`` in time order, 1,000 orders per call with ``enrol_missing``,
BENCH_IMPORT_CLIENTS (default 2) calls in flight. Then the same history again (every row a
duplicate). Per run: orders/s from the first call to the last answer, the slowest call,
the time from the last answer until every member's profile in segmentation counts all
its orders (the catch-up), and the CPU each process spent per order over the import and
its catch-up.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from harness import bench_stack, cpu_seconds, process_tree, write_table

from loyalty_shared.devstack.stack import DEV_KEYS, Stack

ORDERS = int(os.environ.get("BENCH_IMPORT_ORDERS", "100000"))
MEMBERS = int(os.environ.get("BENCH_IMPORT_MEMBERS", "20000"))
REFUND_SHARE = float(os.environ.get("BENCH_IMPORT_REFUNDS", "0.02"))
CLIENTS = int(os.environ.get("BENCH_IMPORT_CLIENTS", "2"))
BATCH = 1000
CATCH_UP_LIMIT_S = 600.0
CATEGORIES = ["shoes", "hats", "books", "toys", "food", "beauty", "garden", "sports"]
GROUPS = ("gateway", "points api", "points worker", "segmentation worker", "feedback worker")


def history(seed: int = 18) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(orders in time order, refunds of some of them, each dated after its order)."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=730)
    orders = []
    for i in range(ORDERS):
        at = start + timedelta(seconds=rng.randrange(730 * 86400 - 3600))
        order: dict[str, Any] = {
            "order_id": f"imp-o{i}",
            "member_id": f"imp-m{int(rng.paretovariate(1.2) * 7919) % MEMBERS}",
            "amount": f"{rng.randrange(500, 150000) / 100:.2f}",
            "occurred_at": at.isoformat(),
            "channel": rng.choice(["web", "app", "store"]),
        }
        if i % 3 == 0:
            order["items"] = [
                {
                    "sku": f"sku-{rng.randrange(500)}",
                    "category": rng.choice(CATEGORIES),
                    "unit_price": f"{rng.randrange(100, 20000) / 100:.2f}",
                    "quantity": rng.randrange(1, 4),
                }
                for _ in range(rng.randrange(1, 4))
            ]
        orders.append(order)
    orders.sort(key=lambda o: o["occurred_at"])
    refunds = []
    for order in rng.sample(orders, int(len(orders) * REFUND_SHARE)):
        at = datetime.fromisoformat(order["occurred_at"]) + timedelta(days=rng.randrange(1, 20))
        refunds.append(
            {
                "refund_id": f"r-{order['order_id']}",
                "order_id": order["order_id"],
                "amount": f"{float(order['amount']) / 2:.2f}",
                "occurred_at": min(at, now).isoformat(),
            }
        )
    return orders, refunds


@dataclass
class Run:
    name: str
    orders: int
    seconds: float
    slowest_s: float
    created: int
    duplicates: int
    failed: int
    catch_up_s: float | None
    cpu: dict[str, float]


async def _send(
    url: str, key: str, batches: list[dict[str, Any]]
) -> tuple[float, float, dict[str, int]]:
    """Every batch through the gateway, CLIENTS at a time: (seconds, slowest call, totals)."""
    totals = {"created": 0, "duplicates": 0, "failed": 0}
    slowest = 0.0
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in batches:
        queue.put_nowait(body)

    async def client() -> None:
        nonlocal slowest
        async with httpx.AsyncClient(
            base_url=url, timeout=120, headers={"Authorization": f"Bearer {key}"}
        ) as http:
            while not queue.empty():
                body = queue.get_nowait()
                began = time.perf_counter()
                answer = await http.post("/v1/orders/batch", json=body)
                slowest = max(slowest, time.perf_counter() - began)
                answer.raise_for_status()
                out = answer.json()
                totals["created"] += out["created"]
                totals["duplicates"] += out["duplicates"]
                totals["failed"] += len(out["failed"])

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return time.perf_counter() - began, slowest, totals


async def _caught_up(database_url: str, expected_orders: int) -> float | None:
    """Seconds until the profiles of the imported members count every imported order."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < CATCH_UP_LIMIT_S:
            counted = await conn.fetchval(
                "SELECT coalesce(sum(order_count), 0) FROM profiles WHERE member_id LIKE 'imp-m%'"
            )
            if counted >= expected_orders:
                return time.perf_counter() - began
            await asyncio.sleep(0.2)
        return None
    finally:
        await conn.close()


def _groups(stack: Stack) -> dict[str, list[int]]:
    def pids(name: str) -> list[int]:
        proc = stack.process(name)
        return process_tree(proc.pid) if proc.poll() is None else []

    postmaster = int((stack.postgres.pgdata / "postmaster.pid").read_text().split()[0])
    groups = {
        "gateway": pids("gateway"),
        "points api": pids("points-api"),
        "points worker": pids("points-worker"),
        "segmentation worker": pids("segmentation-worker"),
        "feedback worker": pids("feedback-worker"),
    }
    groups["postgres"] = process_tree(postmaster)
    return groups


def _cpu(stack: Stack) -> dict[str, float]:
    return {name: cpu_seconds(pids) for name, pids in _groups(stack).items()}


def _import(stack: Stack, name: str, bodies: list[dict[str, Any]], catch_up: bool) -> Run:
    key = DEV_KEYS["storefront"]
    orders = sum(len(b["orders"]) for b in bodies)
    before = _cpu(stack)
    seconds, slowest, totals = asyncio.run(_send(stack.gateway_url(), key, bodies))
    lag = None
    if catch_up:
        url = stack.env_for("segmentation")["SEGMENTATION_DATABASE_URL"]
        lag = asyncio.run(_caught_up(url, totals["created"]))
    after = _cpu(stack)
    cpu = {g: (after[g] - before.get(g, 0)) * 1000 / orders for g in after}
    return Run(name, orders, seconds, slowest, **totals, catch_up_s=lag, cpu=cpu)


def _row(run: Run) -> list[str]:
    cpu = " / ".join(f"{run.cpu.get(g, 0):.2f}" for g in (*GROUPS, "postgres"))
    return [
        run.name,
        f"{run.orders:,}",
        f"{run.orders / run.seconds:,.0f}",
        f"{run.slowest_s:.2f}",
        f"{run.created:,} / {run.duplicates:,} / {run.failed:,}",
        "-" if run.catch_up_s is None and run.created == 0 else f"{run.catch_up_s or 0:.1f}",
        cpu,
    ]


def _batches(orders: list[dict[str, Any]], refunds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bodies of BATCH orders; each refund rides with the first batch after its time."""
    bodies: list[dict[str, Any]] = []
    pending = sorted(refunds, key=lambda r: r["occurred_at"])
    for start in range(0, len(orders), BATCH):
        chunk = orders[start : start + BATCH]
        last = chunk[-1]["occurred_at"]
        due = [r for r in pending if r["occurred_at"] <= last]
        pending = pending[len(due) :]
        body: dict[str, Any] = {"orders": chunk, "enrol_missing": True}
        if due:
            body["refunds"] = due
        bodies.append(body)
    if pending:
        bodies[-1].setdefault("refunds", []).extend(pending)
    return bodies


def main() -> int:
    orders, refunds = history()
    bodies = _batches(orders, refunds)
    with tempfile.TemporaryDirectory(prefix="import-bench-") as data:
        config = bench_stack(Path(data))
        stack = Stack(config)
        try:
            stack.start(timeout=300)
            runs = [
                _import(stack, "new history", bodies, catch_up=True),
                _import(stack, "same history again", bodies, catch_up=False),
            ]
        finally:
            stack.stop()
    header = [
        "run",
        "orders",
        "orders/s",
        "slowest call s",
        "created / duplicates / failed",
        "catch-up s",
        "CPU ms per order: " + " / ".join((*GROUPS, "postgres")),
    ]
    notes = (
        f"{ORDERS:,} orders over {MEMBERS:,} members (two years; a third with items; "
        f"{REFUND_SHARE:.0%} refunded in part), {BATCH} per call with enrol_missing, "
        f"{CLIENTS} calls in flight, through the gateway of a whole stack on one machine.\n"
        "catch-up: from the last answer until the members' profiles count every order.\n"
        "Each worker process runs its service's relay and consumers. One machine, 2 cores "
        "shared with other work: compare within a run."
    )
    print(
        write_table(
            "import", "History import through the gateway", header, [_row(r) for r in runs], notes
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
