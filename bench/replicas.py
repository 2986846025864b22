"""Capacity: checkouts through the gateway with one and with two replicas of every service.

The whole `make run` stack (real processes: the gateway, each service's API and worker,
relays and consumers, embedded Postgres and the broker) with REPLICAS=1, then REPLICAS=2,
on the same machine. Load: wrk, 32 connections, BENCH_SECONDS (default 15) of
POST /v1/orders through the gateway (unique order ids over 1,000 members), then the
same at about half the measured rate (paced) for the latency a storefront sees below
saturation. Each row also says where the CPU went per order (gateway, points APIs,
workers, Postgres) so that what limits the throughput is on the page.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
from harness import bench_stack, process_tree, run_wrk, write_table

from loyalty_shared.devstack.stack import DEV_KEYS, Stack

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "gateway.lua"
MEMBERS = 1000
SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
CONNECTIONS = 32


def _postgres_pids(stack: Stack) -> list[int]:
    """The postmaster (first line of its pid file) and its backends."""
    postmaster = int((stack.postgres.pgdata / "postmaster.pid").read_text().split()[0])
    return process_tree(postmaster)


def _groups(stack: Stack) -> dict[str, list[int]]:
    def pids(kind: str) -> list[int]:
        return [
            pid
            for name, proc in stack.procs
            if kind in name and proc.poll() is None
            for pid in process_tree(proc.pid)
        ]

    return {
        "gateway": pids("gateway"),
        "points api": pids("points-api"),
        "workers": pids("-worker"),
        "postgres": _postgres_pids(stack),
    }


def _measure(replicas: int) -> list[list[str]]:
    with tempfile.TemporaryDirectory(prefix=f"replicas{replicas}-") as data:
        config = bench_stack(Path(data), replicas=replicas)
        stack = Stack(config)
        try:
            stack.start(timeout=300)
            key = DEV_KEYS["storefront"]
            with httpx.Client(base_url=stack.gateway_url(), timeout=30) as client:
                for i in range(MEMBERS):
                    client.post(
                        "/v1/members",
                        json={"member_id": f"bench-m-{i}"},
                        headers={"Authorization": f"Bearer {key}"},
                    ).raise_for_status()
            rows = []
            saturated = _run(stack, f"{replicas} replica(s), saturated", key, None)
            rows.append(saturated)
            rate = float(saturated[1]) / 2
            pause_ms = CONNECTIONS * 1000 / max(rate, 1)  # each connection's mean pause
            rows.append(_run(stack, f"{replicas} replica(s), at {rate:.0f}/s", key, pause_ms))
            return rows
        finally:
            stack.stop()


def _run(stack: Stack, name: str, key: str, pause_ms: float | None) -> list[str]:
    groups = _groups(stack)
    result = run_wrk(
        name,
        stack.gateway_url() + "/v1/orders",
        script=SCRIPT,
        script_args=["orders", uuid.uuid4().hex[:8], str(MEMBERS), key],
        connections=CONNECTIONS,
        duration_s=SECONDS,
        meter={g: (lambda pids=pids: pids) for g, pids in groups.items()},
        env={"ORDERS_PAUSE_MS": f"{pause_ms:.1f}"} if pause_ms else None,
    )
    cpu = result.cpu_ms or {}
    return [
        name,
        f"{result.requests_per_s:.0f}",
        f"{result.p50_ms:.1f}",
        f"{result.p99_ms:.1f}",
        str(result.non_2xx + result.errors),
        " / ".join(
            f"{cpu.get(g, 0):.2f}" for g in ("gateway", "points api", "workers", "postgres")
        ),
    ]


def main() -> int:
    rows = _measure(1) + _measure(2)
    header = [
        "case",
        "orders/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU ms per order: gateway / points APIs / workers / Postgres",
    ]
    notes = (
        "One machine, 2 cores: every process (gateway, APIs, workers, Postgres, broker, wrk)\n"
        "shares them, so a second replica adds processes, not cores; the CPU columns say\n"
        "where each order's time goes. The paced rows offer half the saturated rate, with\n"
        "random pauses (ORDERS_PAUSE_MS in bench/gateway.lua)."
    )
    print(write_table("replicas", "Checkouts with one and two replicas", header, rows, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
