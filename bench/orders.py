"""POST /v1/orders against a bare asyncpg reference, in one run (issue: points hot path).

Both servers: one uvicorn worker, the same embedded Postgres (durable settings).
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
from pathlib import Path

import httpx
from harness import PYTHON, ROOT, infra, process, run_wrk, service_env, write_table

from loyalty_shared.devstack.broker import free_port

HERE = Path(__file__).resolve().parent
MEMBERS = 1000
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = 32


def main() -> None:
    with infra() as inf:
        pg = inf.postgres
        pg.create_database("bench_reference")
        pg.create_database("bench_points")
        env = service_env("POINTS", inf, "bench_points", free_port())
        subprocess.run([PYTHON, "-m", "points", "migrate"], env={**os.environ, **env}, check=True)
        port = int(env["POINTS_PORT"])
        base = f"http://127.0.0.1:{port}"
        results = []

        ref_port = free_port()
        ref_env = {"REFERENCE_DSN": pg.url("bench_reference")}
        ref_cmd = [
            PYTHON,
            "-m",
            "uvicorn",
            "reference_app:app",
            "--port",
            str(ref_port),
            "--log-level",
            "warning",
            "--app-dir",
            str(HERE),
            "--no-access-log",
        ]
        with process(ref_cmd, ref_env, f"http://127.0.0.1:{ref_port}/ready"):
            run_wrk(
                "warm-up",
                f"http://127.0.0.1:{ref_port}/v1/orders",
                script=HERE / "orders.lua",
                script_args=["warm", str(MEMBERS), "spread"],
                duration_s=2,
            )
            results.append(
                run_wrk(
                    "reference (asyncpg: ledger row + balance upsert)",
                    f"http://127.0.0.1:{ref_port}/v1/orders",
                    script=HERE / "orders.lua",
                    script_args=[uuid.uuid4().hex[:8], str(MEMBERS), "spread"],
                    connections=CONNECTIONS,
                    duration_s=DURATION,
                )
            )

        api_cmd = [PYTHON, "-m", "points", "api"]
        with process(api_cmd, env, f"{base}/ready"):
            with httpx.Client(base_url=base) as client:
                for i in range(MEMBERS):
                    client.post(
                        "/v1/members", json={"member_id": f"bench-m-{i}"}
                    ).raise_for_status()
            run_wrk(
                "warm-up",
                f"{base}/v1/orders",
                script=HERE / "orders.lua",
                script_args=["warm", str(MEMBERS), "spread"],
                duration_s=2,
            )
            for case in ("spread", "hot"):
                label = (
                    "POST /v1/orders, 1,000 members"
                    if case == "spread"
                    else "POST /v1/orders, one hot member"
                )
                results.append(
                    run_wrk(
                        label,
                        f"{base}/v1/orders",
                        script=HERE / "orders.lua",
                        script_args=[uuid.uuid4().hex[:8], str(MEMBERS), case],
                        connections=CONNECTIONS,
                        duration_s=DURATION,
                    )
                )

    ref, spread, hot = results
    rows = []
    for r in results:
        ratio = r.requests_per_s / ref.requests_per_s
        rows.append(
            [
                r.name,
                f"{r.requests_per_s:,.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{ratio:.2f}",
                str(r.non_2xx + r.errors),
            ]
        )
    notes = (
        f"wrk, {CONNECTIONS} connections, {DURATION} s per case, one uvicorn worker each, embedded "
        f"Postgres with fsync on.\n\n"
        f"- real / reference throughput: {spread.requests_per_s / ref.requests_per_s:.2f} "
        f"(target >= 0.5)\n"
        f"- real p99: {spread.p99_ms:.1f} ms (target <= 50 ms)\n"
        f"- hot member / spread: {hot.requests_per_s / spread.requests_per_s:.2f} (target >= 0.5)"
    )
    write_table(
        "orders",
        "POST /v1/orders vs a bare asyncpg reference",
        ["case", "req/s", "p50 ms", "p99 ms", "vs reference", "errors"],
        rows,
        notes,
    )
    if any(r.non_2xx or r.errors for r in results):
        print("warning: some requests failed; see the errors column", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
