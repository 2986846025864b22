"""The whole pipeline at speed: checkouts through the gateway with every worker running.

The `make run` stack (loyalty_shared.devstack: the gateway, each service's API and worker
with its relay and consumers, embedded Postgres, the broker), one replica each. Against
it, on the same machine and the same Postgres server: the bare asyncpg reference
(bench/reference_app.py: a ledger row and a balance upsert per order), straight, as in
bench/orders.py.

Runs (wrk, 32 connections, BENCH_SECONDS each, unique order ids over 1,000 members):
1. the reference, saturated: its capacity;
2. POST /v1/orders through the gateway, saturated: the checkout's capacity C, with the
   CPU each process group used per order (gateway, points API, each worker, the other
   APIs, Postgres, the broker);
3. the same paced at 75% of C (random pauses), and the reference at the same offered load:
   the p99 a storefront sees below saturation against the reference's.
During 2 and 3, probes measure the profile lag: a probe member's order through the gateway,
then its segmentation profile (GET /v1/profiles/{id} through the gateway, every 20 ms)
until the order is counted; lag = the first read that shows it - the order's answer.
Targets (issue 18): C >= 0.45 of the reference; lag p95 <= 1 s at 75% of C; p99 at 75%
of C <= 2x the reference's p99 at the same offered load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from harness import PYTHON, WrkResult, bench_stack, process_tree, run_wrk, write_table

from loyalty_shared.devstack.broker import free_port
from loyalty_shared.devstack.stack import DEV_KEYS, Stack

HERE = Path(__file__).resolve().parent
MEMBERS = 1000
SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
CONNECTIONS = 32
PACED = 0.75
PROBES = 3  # probe members, each one order at a time
KEY = DEV_KEYS["storefront"]
GROUPS = (
    "gateway",
    "points api",
    "points worker",
    "segmentation worker",
    "feedback worker",
    "other APIs",
    "postgres",
    "broker",
)


def _groups(stack: Stack) -> dict[str, list[int]]:
    def pids(*names: str) -> list[int]:
        return [
            pid
            for name, proc in stack.procs
            if name in names and proc.poll() is None
            for pid in process_tree(proc.pid)
        ]

    postmaster = int((stack.postgres.pgdata / "postmaster.pid").read_text().split()[0])
    broker = stack.broker._proc  # the broker's process (devstack keeps it private)
    return {
        "gateway": pids("gateway"),
        "points api": pids("points-api"),
        "points worker": pids("points-worker"),
        "segmentation worker": pids("segmentation-worker"),
        "feedback worker": pids("feedback-worker"),
        "other APIs": pids("segmentation-api", "feedback-api"),
        "postgres": process_tree(postmaster),
        "broker": process_tree(broker.pid) if broker is not None else [],
    }


class Probes:
    """PROBES threads, each: an order for its own member, then its profile until counted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lags: list[float] = []
        self.errors: list[Exception] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(PROBES)]

    def _run(self, i: int) -> None:
        try:
            self._probe(i)
        except Exception as exc:  # the run's figures would be missing: said at the end
            self.errors.append(exc)

    def _probe(self, i: int) -> None:
        member = f"bench-probe-{i}"
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            counted = client.get(f"/v1/profiles/{member}").json()["order_count"]
            while not self.stop.is_set():
                order = {
                    "order_id": f"probe-{uuid.uuid4().hex}",
                    "member_id": member,
                    "amount": "20.00",
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
                client.post("/v1/orders", json=order).raise_for_status()
                answered = time.perf_counter()
                while client.get(f"/v1/profiles/{member}").json()["order_count"] <= counted:
                    if time.perf_counter() - answered > 120:
                        raise RuntimeError(f"{member}'s order not on its profile after 120 s")
                    time.sleep(0.02)
                self.lags.append(time.perf_counter() - answered)
                counted += 1
                time.sleep(0.1)

    def __enter__(self) -> Probes:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        if self.errors:
            raise RuntimeError(f"a lag probe failed: {self.errors[0]!r}") from self.errors[0]

    def line(self) -> str:
        lags = sorted(self.lags) or [float("nan")]

        def pct(q: float) -> float:
            return lags[min(len(lags) - 1, int(q * len(lags)))]

        return f"p50 {pct(0.5):.2f} s, p95 {pct(0.95):.2f} s ({len(self.lags)} probes)"


def _load(url: str, script: str, args: list[str], rate: float | None, meter: dict) -> WrkResult:  # type: ignore[type-arg]
    """wrk for SECONDS; with `rate`, each connection pauses a random time of mean
    CONNECTIONS / rate before each request (bench/orders.lua, bench/gateway.lua)."""
    return run_wrk(
        script,
        url,
        script=HERE / script,
        script_args=args,
        connections=CONNECTIONS,
        duration_s=SECONDS,
        meter=meter,
        env={"ORDERS_PAUSE_MS": f"{CONNECTIONS * 1000 / rate:.3f}"} if rate else None,
    )


def _reference(stack: Stack) -> tuple[str, subprocess.Popen[bytes]]:
    stack.postgres.create_database("bench_reference")
    port = free_port()
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "uvicorn",
            "reference_app:app",
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--app-dir",
            str(HERE),
            "--no-access-log",
        ],
        env={**os.environ, "REFERENCE_DSN": stack.postgres.url("bench_reference")},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the reference app did not start")


def _enrol(url: str) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for i in range(MEMBERS):
            client.post("/v1/members", json={"member_id": f"bench-m-{i}"}).raise_for_status()
        for i in range(PROBES):
            client.post("/v1/members", json={"member_id": f"bench-probe-{i}"}).raise_for_status()
        for i in range(PROBES):  # the profile exists once segmentation took the enrolment
            while client.get(f"/v1/profiles/bench-probe-{i}").status_code != 200:
                time.sleep(0.1)


def _cpu(result: WrkResult) -> str:
    cpu = result.cpu_ms or {}
    return " / ".join(f"{cpu.get(g, 0):.2f}" for g in GROUPS)


def measure() -> tuple[list[list[str]], str]:
    with tempfile.TemporaryDirectory(prefix="pipeline-") as data:
        config = bench_stack(Path(data))
        stack = Stack(config)
        reference = None
        try:
            stack.start(timeout=900)  # a loaded machine starts it slowly
            gateway = stack.gateway_url()
            _enrol(gateway)
            ref_url, reference = _reference(stack)
            ref_meter = {"reference": lambda: process_tree(reference.pid)}
            ref_args = [uuid.uuid4().hex[:8], str(MEMBERS), "spread"]
            ref = _load(f"{ref_url}/v1/orders", "orders.lua", ref_args, None, ref_meter)
            meter = {g: (lambda pids=pids: pids) for g, pids in _groups(stack).items()}
            args = ["orders", uuid.uuid4().hex[:8], str(MEMBERS), KEY]
            with Probes(gateway) as saturated_lag:
                full = _load(f"{gateway}/v1/orders", "gateway.lua", args, None, meter)
            rate = full.requests_per_s * PACED
            args = ["orders", uuid.uuid4().hex[:8], str(MEMBERS), KEY]
            with Probes(gateway) as paced_lag:
                paced = _load(f"{gateway}/v1/orders", "gateway.lua", args, rate, meter)
            ref_args = [uuid.uuid4().hex[:8], str(MEMBERS), "spread"]
            ref_paced = _load(f"{ref_url}/v1/orders", "orders.lua", ref_args, rate, ref_meter)
        finally:
            if reference is not None:
                reference.terminate()
                reference.wait(10)
            stack.stop()
    share = full.requests_per_s / ref.requests_per_s
    lag95 = sorted(paced_lag.lags)[int(0.95 * len(paced_lag.lags))] if paced_lag.lags else 9e9
    rows = [
        ["reference, saturated", f"{ref.requests_per_s:.0f}", f"{ref.p99_ms:.1f}", "", "", ""],
        [
            "checkout through the gateway, every worker running, saturated",
            f"{full.requests_per_s:.0f} ({share:.2f} of the reference)",
            f"{full.p99_ms:.1f}",
            saturated_lag.line(),
            _cpu(full),
            f">= 0.45: {'yes' if share >= 0.45 else 'no'}",
        ],
        [
            f"the same at {PACED:.0%} of its capacity ({rate:.0f}/s offered)",
            f"{paced.requests_per_s:.0f}",
            f"{paced.p99_ms:.1f} ({paced.p99_ms / ref_paced.p99_ms:.1f}x the reference)",
            paced_lag.line(),
            _cpu(paced),
            f"lag p95 <= 1 s: {'yes' if lag95 <= 1 else 'no'}; p99 <= 2x: "
            f"{'yes' if paced.p99_ms <= 2 * ref_paced.p99_ms else 'no'}",
        ],
        [
            f"reference at the same offered load ({rate:.0f}/s)",
            f"{ref_paced.requests_per_s:.0f}",
            f"{ref_paced.p99_ms:.1f}",
            "",
            "",
            "",
        ],
    ]
    errors = sum(r.non_2xx + r.errors for r in (ref, full, paced, ref_paced))
    return rows, f"Non-2xx answers and socket errors over all runs: {errors}."


def main() -> int:
    load_before = os.getloadavg()[0]
    rows, errors = measure()
    header = [
        "case",
        "orders/s",
        "p99 ms",
        "profile lag",
        "CPU ms per order: " + " / ".join(GROUPS),
        "target met",
    ]
    notes = (
        f"{errors} Load average (1 min) before the run: {load_before:.1f}, after: "
        f"{os.getloadavg()[0]:.1f}.\n\n"
        "One machine, 2 cores: every process (gateway, APIs, workers, Postgres, broker, wrk)\n"
        "shares them. The reference is bench/reference_app.py on the stack's Postgres\n"
        f"server, one worker, straight (no gateway). Each run is {SECONDS} s with 32\n"
        "connections; paced runs offer the rate with random pauses (ORDERS_PAUSE_MS).\n"
        "Profile lag: from a probe order's answer (through the gateway) to the first read\n"
        "of its segmentation profile (through the gateway, every 20 ms) that counts it; it\n"
        f"includes the relay, the broker, the consumer and the polling; {PROBES} probes run\n"
        "side by side with the load, one order at a time each."
    )
    print(write_table("pipeline", "The whole pipeline at speed", header, rows, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
