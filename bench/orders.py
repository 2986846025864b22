"""POST /v1/orders against a bare asyncpg reference, in one run (issue: points hot path).

Both servers: the same number of uvicorn workers (1, then 2: BENCH_WORKERS), the same
embedded Postgres (durable settings).
Load: wrk, 32 connections, 10 s per case, unique order ids. Cases: the reference,
the real endpoint with orders spread over 1,000 members, and the real endpoint
with every order on one hot member (row-lock contention).
Targets: real >= 0.5x the reference, p99 <= 50 ms, hot >= 0.5x spread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from harness import (
    PYTHON,
    ROOT,
    WrkResult,
    infra,
    process,
    process_tree,
    run_wrk,
    service_env,
    write_table,
)

from loyalty_shared.devstack.broker import free_port

HERE = Path(__file__).resolve().parent
MEMBERS = 1000
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = 32
# uvicorn workers per server: one (the comparison), then as many as cores
WORKERS = [int(w) for w in os.environ.get("BENCH_WORKERS", "1,2").split(",")]
REFERENCE = "reference (asyncpg: ledger row + balance upsert)"
SPREAD = "POST /v1/orders, 1,000 members"
HOT = "POST /v1/orders, one hot member"


def meter(app_pid: int, postmaster_pid: int) -> dict[str, Callable[[], Sequence[int]]]:
    """CPU groups for run_wrk: the app's process tree and this Postgres server's processes.

    (Not every process named postgres: another server on the machine, a test run's for
    instance, would be counted too.)
    """
    return {"app": lambda: process_tree(app_pid), "postgres": lambda: process_tree(postmaster_pid)}


def _load(name: str, url: str, case: str, pid: int, postmaster: int) -> WrkResult:
    return run_wrk(
        name,
        url,
        script=HERE / "orders.lua",
        script_args=[uuid.uuid4().hex[:8], str(MEMBERS), case],
        connections=CONNECTIONS,
        duration_s=DURATION,
        meter=meter(pid, postmaster),
    )


def _warm(url: str) -> None:
    run_wrk(
        "warm-up",
        url,
        script=HERE / "orders.lua",
        script_args=["warm" + uuid.uuid4().hex[:4], str(MEMBERS), "spread"],
        duration_s=2,
    )


def main() -> None:
    results: dict[tuple[str, int], WrkResult] = {}
    with infra() as inf:
        pg = inf.postgres
        postmaster = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
        pg.create_database("bench_reference")
        pg.create_database("bench_points")
        env = service_env("POINTS", inf, "bench_points", free_port())
        subprocess.run([PYTHON, "-m", "points", "migrate"], env={**os.environ, **env}, check=True)
        port = int(env["POINTS_PORT"])
        base = f"http://127.0.0.1:{port}"
        ref_port = free_port()
        ref_env = {"REFERENCE_DSN": pg.url("bench_reference")}
        enrolled = False
        for workers in WORKERS:
            ref_cmd = [
                PYTHON,
                "-m",
                "uvicorn",
                "reference_app:app",
                "--port",
                str(ref_port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--app-dir",
                str(HERE),
                "--no-access-log",
            ]
            ref_url = f"http://127.0.0.1:{ref_port}"
            with process(ref_cmd, ref_env, f"{ref_url}/ready") as ref_pid:
                _warm(f"{ref_url}/v1/orders")
                results["reference", workers] = _load(
                    REFERENCE, f"{ref_url}/v1/orders", "spread", ref_pid, postmaster
                )
            api_cmd = [PYTHON, "-m", "points", "api", "--workers", str(workers)]
            with process(api_cmd, env, f"{base}/ready") as api_pid:
                if not enrolled:
                    with httpx.Client(base_url=base) as client:
                        for i in range(MEMBERS):
                            client.post(
                                "/v1/members", json={"member_id": f"bench-m-{i}"}
                            ).raise_for_status()
                    enrolled = True
                _warm(f"{base}/v1/orders")
                results["spread", workers] = _load(
                    SPREAD, f"{base}/v1/orders", "spread", api_pid, postmaster
                )
                if workers == 1:
                    results["hot", workers] = _load(
                        HOT, f"{base}/v1/orders", "hot", api_pid, postmaster
                    )

    rows = []
    for (_case, workers), r in results.items():
        ref = results["reference", workers]
        rows.append(
            [
                r.name,
                str(workers),
                f"{r.requests_per_s:,.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{r.requests_per_s / ref.requests_per_s:.2f}",
                f"{r.cpu_ms['app']:.2f}" if r.cpu_ms else "",
                f"{r.cpu_ms['postgres']:.2f}" if r.cpu_ms else "",
                str(r.non_2xx + r.errors),
            ]
        )
    ref, spread, hot = results["reference", 1], results["spread", 1], results["hot", 1]
    notes = (
        f"wrk, {CONNECTIONS} connections, {DURATION} s per case, embedded Postgres with fsync on, "
        f"the reference and the real service with the same number of uvicorn workers. CPU "
        f"columns: CPU time used during the run by the app's processes and by all of "
        f"Postgres's, per request.\n\n"
        f"- real / reference throughput, one worker each: "
        f"{spread.requests_per_s / ref.requests_per_s:.2f} (target >= 0.5)\n"
        + "".join(
            f"- real / reference throughput, {w} workers each: "
            f"{results['spread', w].requests_per_s / results['reference', w].requests_per_s:.2f}"
            f"\n"
            for w in WORKERS
            if w != 1
        )
        + f"- real p99, one worker: {spread.p99_ms:.1f} ms (target <= 50 ms)\n"
        + "".join(
            f"- real p99, {w} workers: {results['spread', w].p99_ms:.1f} ms\n"
            for w in WORKERS
            if w != 1
        )
        + f"- hot member / spread: {hot.requests_per_s / spread.requests_per_s:.2f} "
        f"(target >= 0.5)"
    )
    write_table(
        "orders",
        "POST /v1/orders vs a bare asyncpg reference",
        [
            "case",
            "workers",
            "req/s",
            "p50 ms",
            "p99 ms",
            "vs reference",
            "app CPU ms/req",
            "Postgres CPU ms/req",
            "errors",
        ],
        rows,
        notes,
    )
    if any(r.non_2xx or r.errors for r in results.values()):
        print("warning: some requests failed; see the errors column", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
