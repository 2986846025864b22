"""Benchmark plumbing: an embedded Postgres, service processes, wrk runs, result tables.

Used by the scripts in this folder; each prints a table and writes it to bench/results/.
Load comes from wrk (Debian package; installed with apt-get if missing) on loopback only.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from loyalty_shared.devstack.broker import TansuBroker, free_port
from loyalty_shared.devstack.postgres import EmbeddedPostgres
from loyalty_shared.devstack.stack import SERVICES, StackConfig
from loyalty_shared.settings import DEV_GATEWAY_SECRET

# wrk scripts calling a service straight (not through the gateway) send it as X-Gateway-Token
GATEWAY_TOKEN_ENV = {"X_GATEWAY_TOKEN": DEV_GATEWAY_SECRET}
# ... and so does an HTTP client calling it straight
GATEWAY_HEADERS = {"X-Gateway-Token": DEV_GATEWAY_SECRET}

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("[bench] wrk not found; installing the Debian package", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
    path = shutil.which("wrk")
    if not path:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        path = shutil.which("wrk")
    assert path, "wrk is required (apt-get install wrk)"
    return path


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {system}, Python {platform.python_version()}"


@dataclass
class WrkResult:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: int
    cpu_ms: dict[str, float] | None = None  # CPU per request by process group, when metered


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([0-9.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(
    name: str,
    url: str,
    *,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    connections: int = 32,
    duration_s: int = 10,
    threads: int = 2,
    meter: dict[str, Callable[[], Sequence[int]]] | None = None,
    env: dict[str, str] | None = None,
) -> WrkResult:
    """Run wrk; with `meter` ({group: pids()}), also the CPU each group used per request;
    `env`: variables added to wrk's environment (for its script)."""
    cmd = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    before = {g: cpu_seconds(pids()) for g, pids in (meter or {}).items()}
    out = subprocess.run(
        cmd,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GATEWAY_TOKEN_ENV, **(env or {})},
    ).stdout
    used = {g: cpu_seconds(pids()) - before[g] for g, pids in (meter or {}).items()}
    if not re.search(r"^\s+99%\s+(\S+)\s*$", out, re.M):
        raise RuntimeError(f"wrk gave no latency distribution for {name!r}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    # the "Latency Distribution" lines look like "     50%    1.23ms" (Stdev columns hold "62.50%")
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)\s*$", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        name=name,
        requests_per_s=rps,
        p50_ms=p50,
        p99_ms=p99,
        requests=total,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        cpu_ms={g: secs * 1000 / max(total, 1) for g, secs in used.items()} if meter else None,
    )


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by these processes and their reaped children.

    A child that exits moves its time into its parent's cutime/cstime, so the sum over a
    process group with its parent stays monotonic while backends come and go.
    """
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / _TICKS


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn workers, for instance)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@dataclass
class Infra:
    postgres: EmbeddedPostgres
    broker: TansuBroker


@contextmanager
def infra() -> Iterator[Infra]:
    base = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    postgres = EmbeddedPostgres(base / "postgres")  # durable settings, as in production
    broker = TansuBroker(free_port(), log_path=base / "tansu.log")
    postgres.start()
    postgres.wait_ready()
    broker.start()
    try:
        yield Infra(postgres, broker)
    finally:
        broker.stop()
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def process(cmd: Sequence[str], env: dict[str, str], ready_url: str) -> Iterator[int]:
    proc = subprocess.Popen(
        list(cmd), env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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


def service_env(prefix: str, infra_: Infra, database: str, port: int) -> dict[str, str]:
    return {
        f"{prefix}_ENVIRONMENT": "dev",
        f"{prefix}_DATABASE_URL": infra_.postgres.url(database, "postgresql+asyncpg"),
        f"{prefix}_KAFKA_BOOTSTRAP": infra_.broker.bootstrap,
        f"{prefix}_KAFKA_IDEMPOTENT_PRODUCER": "false",
        f"{prefix}_PORT": str(port),
        f"{prefix}_LOG_LEVEL": "WARNING",
    }


def write_table(
    name: str, title: str, header: Sequence[str], rows: Sequence[Sequence[str]], notes: str
) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    text = "\n".join(
        [
            f"# {title}",
            "",
            f"- when: {datetime.now(UTC).isoformat(timespec='seconds')}",
            f"- machine: {machine()}",
            "",
            line,
            sep,
            *body,
            "",
            notes,
            "",
        ]
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return text


PYTHON = sys.executable


NO_RATE_LIMIT = '{"storefront": {"rate": 100000, "burst": 100000}}'


def bench_stack(data_dir: Path, *, replicas: int = 1, rate_limited: bool = False) -> StackConfig:
    """The `make run` stack on free ports, quiet (warnings only) and, unless asked, without
    the storefront's rate limit: what the stack benchmarks and the fault suite start (the
    services log JSON lines, StackConfig's default, which the fault suite reads)."""
    quiet = {f"{prefix}_LOG_LEVEL": "WARNING" for prefix, _ in SERVICES.values()}
    limits = {} if rate_limited else {"GATEWAY_RATE_LIMITS": NO_RATE_LIMIT}
    return StackConfig(
        data_dir=data_dir,
        gateway_port=free_port(),
        ports={name: free_port() for name in SERVICES},
        kafka_port=free_port(),
        fast_postgres=True,
        replicas=replicas,
        extra_env={**limits, **quiet, "GATEWAY_LOG_LEVEL": "WARNING"},
    )
