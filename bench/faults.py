"""The fault suite at length (`make faults`): a stack of real processes with two replicas of
every API and worker, steady checkouts through the gateway, one fault at a time.

Each row: the orders sent while the fault happened, how many were accepted, the failed
attempts by status (the storefront sends a failed order again with the same id), orders
lost and effects applied twice (both must be 0), and the seconds from the fault's end
until the pipeline drained and every service's books agreed. The faults and the checks
are in shared/src/loyalty_shared/devstack/faults.py. Loopback only; fixed counts and times:
FAULTS_LOAD_SECONDS (20), FAULTS_RATE (20 orders/s), FAULTS_BROKER_DOWN (30 s),
FAULTS_HANG (15 s); FAULTS_ONLY: a comma-separated list of fault names.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from harness import bench_stack, write_table

from loyalty_shared.devstack.faults import COLUMNS, Durations, run_suite
from loyalty_shared.devstack.stack import Stack


def _durations() -> Durations:
    env = os.environ
    return Durations(
        load_seconds=float(env.get("FAULTS_LOAD_SECONDS", 20)),
        rate_per_second=float(env.get("FAULTS_RATE", 20)),
        broker_down_seconds=float(env.get("FAULTS_BROKER_DOWN", 30)),
        hang_seconds=float(env.get("FAULTS_HANG", 15)),
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="faults-") as data:
        config = bench_stack(Path(data), replicas=2, rate_limited=True)
        stack = Stack(config)
        try:
            stack.start(timeout=300)
            only = [f for f in os.environ.get("FAULTS_ONLY", "").split(",") if f]
            rows = asyncio.run(run_suite(stack, _durations(), only=only or None))
        finally:
            stack.stop()
    problems = [f"- {row.fault}: {p}" for row in rows for p in row.problems]
    notes = "\n".join(
        [
            "Two replicas of every API and worker, one gateway; the storefront retries a failed",
            "order with the same id until it is answered. `lost` and `duplicate effects` must be",
            "0; `recovery s`: from the fault's end until no backlog, no lag and every service's",
            "books agree with points'.",
            "",
            "Problems found: " + ("none" if not problems else ""),
            *problems,
        ]
    )
    print(write_table("faults", "Fault suite", COLUMNS, [r.cells() for r in rows], notes))
    bad = any(r.lost or r.duplicate_effects or r.problems for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
