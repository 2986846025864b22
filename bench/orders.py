"""POST /v1/orders against a bare asyncpg reference, in one run (issue: points hot path).

Both servers: the same number of uvicorn workers (1, then 2: BENCH_WORKERS), the same
embedded Postgres (durable settings), both running at once.
Load: wrk, 32 connections, unique order ids. Cases: the reference, the real endpoint with
orders spread over 1,000 members, and the real endpoint with every order on one hot member
(row-lock contention). The cases take turns in BENCH_ROUNDS rounds (default 3) of
BENCH_SECONDS each (default 6): a shared machine's speed drifts over a minute, so each
ratio is taken within a round and the median of the rounds is reported.
Targets: real >= 0.5x the reference, p99 <= 50 ms, hot >= 0.5x spread.

Each speed layer earns its place (issue #17): with one worker, a second points API runs
with one layer switched off (``LAYERS``: ``POINTS_ORDER_FACTS_MEMBERS=0`` or
``POINTS_HOTPATH_OFF``), and the two take turns on the case the layer is for; 'vs all on'
is the median over the rounds of off / on within each round. BENCH_LAYERS picks layers
(comma-separated names, empty for none).

At 32 connections that answer as fast as they can, latency is mostly queueing: the median
is about 32 / throughput (Little's law). So each round, with one worker, also paces the
same 32 connections (random pauses: shoppers arriving at random) at a fraction of the
throughput the real endpoint had in that round (PACED), for both the real endpoint and
the reference at the same offered rate: the latency a storefront sees below saturation.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from harness import (
    GATEWAY_HEADERS,
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
DURATION = int(os.environ.get("BENCH_SECONDS", "6"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = 32
# uvicorn workers per server: one (the comparison), then as many as cores
WORKERS = [int(w) for w in os.environ.get("BENCH_WORKERS", "1,2").split(",")]
REFERENCE = "reference (asyncpg: ledger row + balance upsert)"
SPREAD = "POST /v1/orders, 1,000 members"
HOT = "POST /v1/orders, one hot member"
# paced runs: fractions of the real endpoint's throughput in the same round (one worker)
PACED = [float(f) for f in os.environ.get("BENCH_PACED", "0.5,0.75").split(",") if f]
# speed layers: name -> (the environment that switches it off, the case it is for)
LAYERS: dict[str, tuple[dict[str, str], str]] = {
    "facts cache": ({"POINTS_ORDER_FACTS_MEMBERS": "0"}, "spread"),
    "fast_lane": ({"POINTS_HOTPATH_OFF": '["fast_lane"]'}, "spread"),
    "keyed_batches": ({"POINTS_HOTPATH_OFF": '["keyed_batches"]'}, "hot"),
    "driver_autocommit": ({"POINTS_HOTPATH_OFF": '["driver_autocommit"]'}, "spread"),
}
# rounds of each layer's comparison; BENCH_MAIN=0: only the layers (bench/results/orders-layers.md)
LAYER_ROUNDS = int(os.environ.get("BENCH_LAYER_ROUNDS", str(ROUNDS)))
MAIN = os.environ.get("BENCH_MAIN", "1") != "0"
OFF_MEMBERS = "bench-o-"  # the members of the API without a layer (``_layer_runs``)
SELECTED_LAYERS = [
    name for name in os.environ.get("BENCH_LAYERS", ",".join(LAYERS)).split(",") if name
]


def meter(app_pid: int, postmaster_pid: int) -> dict[str, Callable[[], Sequence[int]]]:
    """CPU groups for run_wrk: the app's process tree and this Postgres server's processes.

    (Not every process named postgres: another server on the machine, a test run's for
    instance, would be counted too.)
    """
    return {"app": lambda: process_tree(app_pid), "postgres": lambda: process_tree(postmaster_pid)}


def _load(
    name: str,
    url: str,
    case: str,
    pid: int,
    postmaster: int,
    rate: float | None = None,
    members: str = "bench-m-",
) -> WrkResult:
    """One run; with `rate` (requests/s over all connections), paced at about that rate:
    each connection pauses a random time of mean CONNECTIONS / rate before each request
    (the rate reached is a little lower: a connection also waits for its answers).
    ``members``: the prefix of the member ids the orders are for."""
    env = {"ORDERS_PAUSE_MS": f"{CONNECTIONS * 1000 / rate:.3f}"} if rate else None
    return run_wrk(
        name,
        url,
        script=HERE / "orders.lua",
        script_args=[uuid.uuid4().hex[:8], str(MEMBERS), case, members],
        connections=CONNECTIONS,
        # paced runs make fewer requests: twice as long, for as many samples of the tail
        duration_s=DURATION * 2 if rate else DURATION,
        meter=meter(pid, postmaster),
        env=env,
    )


def _paced(fraction: float, reference: bool) -> str:
    server = REFERENCE if reference else SPREAD
    return f"{server}, paced at {fraction:.0%} of the real endpoint's capacity"


def _warm(url: str, members: str = "bench-m-") -> None:
    run_wrk(
        "warm-up",
        url,
        script=HERE / "orders.lua",
        script_args=["warm" + uuid.uuid4().hex[:4], str(MEMBERS), "spread", members],
        duration_s=2,
    )


def _enrol(base: str, members: str) -> None:
    with httpx.Client(base_url=base, headers=GATEWAY_HEADERS) as client:
        for i in range(MEMBERS):
            client.post("/v1/members", json={"member_id": f"{members}{i}"}).raise_for_status()


def _combined(runs: list[WrkResult]) -> WrkResult:
    """The rounds of one case as one: total requests over total time, median percentiles."""
    cpu = None
    if all(r.cpu_ms for r in runs):
        cpu = {
            k: statistics.median(r.cpu_ms[k] for r in runs if r.cpu_ms)
            for k in runs[0].cpu_ms or {}
        }
    return WrkResult(
        runs[0].name,
        sum(r.requests_per_s for r in runs) / len(runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.requests for r in runs),
        sum(r.non_2xx for r in runs),
        sum(r.errors for r in runs),
        cpu,
    )


def _layer_runs(
    env: dict[str, str], base: str, api_pid: int, postmaster: int
) -> dict[str, list[tuple[WrkResult, WrkResult]]]:
    """Per layer: (all layers on, this one off) in each round, one worker each.

    The API without the layer has members of its own (``bench-o-``): with the same members,
    each API's turn would change the balance rows the other remembered (the facts cache),
    and the all-on API would meet stale facts at the start of each of its turns.
    """
    found: dict[str, list[tuple[WrkResult, WrkResult]]] = {}
    _enrol(base, OFF_MEMBERS)
    for layer in SELECTED_LAYERS:
        switch, case = LAYERS[layer]
        off_env = {**env, **switch, "POINTS_PORT": str(free_port())}
        off_base = f"http://127.0.0.1:{off_env['POINTS_PORT']}"
        off_cmd = [PYTHON, "-m", "points", "api", "--workers", "1"]
        with process(off_cmd, off_env, f"{off_base}/ready") as off_pid:
            _warm(f"{off_base}/v1/orders", OFF_MEMBERS)
            name = f"{SPREAD if case == 'spread' else HOT}, without {layer}"
            for _ in range(LAYER_ROUNDS):
                on = _load(f"{layer} on", f"{base}/v1/orders", case, api_pid, postmaster)
                off = _load(
                    name, f"{off_base}/v1/orders", case, off_pid, postmaster, members=OFF_MEMBERS
                )
                found.setdefault(layer, []).append((on, off))
    return found


def _cpu(r: WrkResult) -> float:
    return sum(r.cpu_ms.values()) if r.cpu_ms else 0.0


def _layer_rows(layers: dict[str, list[tuple[WrkResult, WrkResult]]]) -> list[list[str]]:
    """Per layer: the all-on API's runs and the one without it, with off / on per round."""
    rows = []
    for layer, runs in layers.items():
        on, off = _combined([n for n, _ in runs]), _combined([o for _, o in runs])
        ratios = sorted(o.requests_per_s / n.requests_per_s for n, o in runs)
        cpu = sorted(_cpu(o) / _cpu(n) for n, o in runs if _cpu(n))
        for r, cells in (
            (on, ["", "", ""]),
            (
                off,
                [
                    f"{statistics.median(ratios):.2f}",
                    f"{ratios[0]:.2f}-{ratios[-1]:.2f}",
                    f"{statistics.median(cpu):.2f} ({cpu[0]:.2f}-{cpu[-1]:.2f})" if cpu else "",
                ],
            ),
        ):
            name = r.name if r is off else f"{off.name.split(', without')[0]}, all on ({layer})"
            rows.append(
                [
                    name,
                    "1",
                    f"{r.requests_per_s:,.0f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    "",
                    "",
                    *cells,
                    f"{r.cpu_ms['app']:.2f}" if r.cpu_ms else "",
                    f"{r.cpu_ms['postgres']:.2f}" if r.cpu_ms else "",
                    str(r.non_2xx + r.errors),
                ]
            )
    return rows


HEADER = [
    "case",
    "workers",
    "req/s",
    "p50 ms",
    "p99 ms",
    "vs reference",
    "rounds",
    "vs all on",
    "rounds (all on)",
    "CPU/req vs all on",
    "app CPU ms/req",
    "Postgres CPU ms/req",
    "errors",
]
LAYER_NOTES = (
    "'without' rows: one speed layer switched off in a second API (one worker), taking "
    "turns with the API with every layer on ('all on' rows, the same rounds), on the case "
    "the layer is for; 'vs all on': the median over the rounds of the throughput ratio "
    "within each round (and its range); 'CPU/req vs all on': the same for the CPU per "
    "request (app + Postgres), which a busy machine disturbs less than throughput. A layer "
    "that buys less than 5% goes (issue #17)."
)


def _write_layers_only(layers: dict[str, list[tuple[WrkResult, WrkResult]]]) -> None:
    notes = (
        f"wrk, {CONNECTIONS} connections, {LAYER_ROUNDS} rounds of {DURATION} s per layer; "
        f"embedded Postgres with fsync on. " + LAYER_NOTES
    )
    write_table(
        "orders-layers",
        "POST /v1/orders: what each speed layer buys",
        HEADER,
        _layer_rows(layers),
        notes,
    )


def main() -> None:
    runs: dict[tuple[str, int], list[WrkResult]] = {}
    layers: dict[str, list[tuple[WrkResult, WrkResult]]] = {}
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
            api_cmd = [PYTHON, "-m", "points", "api", "--workers", str(workers)]
            with (
                process(ref_cmd, ref_env, f"{ref_url}/ready") as ref_pid,
                process(api_cmd, env, f"{base}/ready") as api_pid,
            ):
                if not enrolled:
                    _enrol(base, "bench-m-")
                    enrolled = True
                _warm(f"{ref_url}/v1/orders")
                _warm(f"{base}/v1/orders")
                for _ in range(ROUNDS if MAIN else 0):
                    runs.setdefault(("reference", workers), []).append(
                        _load(REFERENCE, f"{ref_url}/v1/orders", "spread", ref_pid, postmaster)
                    )
                    runs.setdefault(("spread", workers), []).append(
                        _load(SPREAD, f"{base}/v1/orders", "spread", api_pid, postmaster)
                    )
                    if workers == 1:
                        runs.setdefault(("hot", workers), []).append(
                            _load(HOT, f"{base}/v1/orders", "hot", api_pid, postmaster)
                        )
                        capacity = runs["spread", workers][-1].requests_per_s
                        for fraction in PACED:
                            rate = capacity * fraction
                            runs.setdefault((f"paced {fraction}", workers), []).append(
                                _load(
                                    _paced(fraction, False),
                                    f"{base}/v1/orders",
                                    "spread",
                                    api_pid,
                                    postmaster,
                                    rate,
                                )
                            )
                            runs.setdefault((f"reference paced {fraction}", workers), []).append(
                                _load(
                                    _paced(fraction, True),
                                    f"{ref_url}/v1/orders",
                                    "spread",
                                    ref_pid,
                                    postmaster,
                                    rate,
                                )
                            )
                if workers == 1:
                    layers = _layer_runs(env, base, api_pid, postmaster)

    def ratio(case: str, workers: int, base_case: str = "reference") -> float:
        """Median over the rounds of the ratio within each round."""
        pairs = zip(runs[case, workers], runs[base_case, workers], strict=True)
        return statistics.median(r.requests_per_s / b.requests_per_s for r, b in pairs)

    def spread_of(case: str, workers: int, base_case: str = "reference") -> str:
        pairs = zip(runs[case, workers], runs[base_case, workers], strict=True)
        values = sorted(r.requests_per_s / b.requests_per_s for r, b in pairs)
        return f"{values[0]:.2f}-{values[-1]:.2f}"

    def _vs_reference(case: str, workers: int) -> tuple[str, str]:
        """The 'vs reference' and 'rounds' cells (none for paced runs: the rate was set)."""
        if case == "reference":
            return "1.00", ""
        if "paced" in case:
            return "", ""
        return f"{ratio(case, workers):.2f}", spread_of(case, workers)

    if not MAIN:
        _write_layers_only(layers)
        return
    results = {key: _combined(value) for key, value in runs.items()}
    rows = []
    for (case, workers), r in results.items():
        rows.append(
            [
                r.name,
                str(workers),
                f"{r.requests_per_s:,.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                *_vs_reference(case, workers),
                "",
                "",
                "",
                f"{r.cpu_ms['app']:.2f}" if r.cpu_ms else "",
                f"{r.cpu_ms['postgres']:.2f}" if r.cpu_ms else "",
                str(r.non_2xx + r.errors),
            ]
        )
    rows.extend(_layer_rows(layers))
    spread = results["spread", 1]
    notes = (
        f"wrk, {CONNECTIONS} connections; the cases take turns, {ROUNDS} rounds of {DURATION} s; "
        f"embedded Postgres with fsync on; the reference and the real service with the same "
        f"number of uvicorn workers, both up for the whole run. req/s: the mean of the rounds; "
        f"p50, p99 and CPU: their medians. 'vs reference': the median over the rounds of the "
        f"ratio within each round (and its range). CPU columns: CPU time used during the run "
        f"by the app's processes and by this Postgres server's, per request. Paced rows: the "
        f"same {CONNECTIONS} connections, each pausing a random (exponential) time before "
        f"each request, offered a fraction of the throughput the real endpoint reached in "
        f"the same round (the reference offered the same rate), {DURATION * 2} s each: the "
        f"latency below saturation. " + LAYER_NOTES + "\n\n"
        f"- real / reference throughput, one worker each: {ratio('spread', 1):.2f} "
        f"(rounds {spread_of('spread', 1)}; target >= 0.5)\n"
        + "".join(
            f"- real / reference throughput, {w} workers each: {ratio('spread', w):.2f} "
            f"(rounds {spread_of('spread', w)})\n"
            for w in WORKERS
            if w != 1
        )
        + f"- real p99, one worker: {spread.p99_ms:.1f} ms (target <= 50 ms); "
        f"the reference's: {results['reference', 1].p99_ms:.1f} ms\n"
        + "".join(
            f"- real p99, {w} workers: {results['spread', w].p99_ms:.1f} ms\n"
            for w in WORKERS
            if w != 1
        )
        + "".join(
            f"- p99 paced at {f:.0%} of the real endpoint's capacity "
            f"(~{results[f'paced {f}', 1].requests_per_s:,.0f} req/s): real "
            f"{results[f'paced {f}', 1].p99_ms:.1f} ms, reference "
            f"{results[f'reference paced {f}', 1].p99_ms:.1f} ms\n"
            for f in PACED
            if 1 in WORKERS
        )
        + f"- hot member / spread: {ratio('hot', 1, 'spread'):.2f} "
        f"(rounds {spread_of('hot', 1, 'spread')}; target >= 0.5)"
    )
    write_table(
        "orders",
        "POST /v1/orders vs a bare asyncpg reference",
        HEADER,
        rows,
        notes,
    )
    if any(r.non_2xx or r.errors for r in results.values()):
        print("warning: some requests failed; see the errors column", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
