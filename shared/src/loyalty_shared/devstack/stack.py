"""Start the whole platform as local processes: what ``make run`` and the end-to-end tests use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from loyalty_shared.devstack.broker import TansuBroker, die_with_parent, port_open
from loyalty_shared.devstack.postgres import EmbeddedPostgres
from loyalty_shared.devstack.state import Recorded, State, forget
from loyalty_shared.settings import DEV_GATEWAY_SECRET

DEV_KEYS = {
    "admin": "dev-admin-key",
    "ops": "dev-ops-key",
    "storefront": "dev-storefront-key",
}
DEV_MEMBER_TOKEN_SECRET = "dev-member-token-secret-change-me-outside-dev"  # noqa: S105 (documented dev secret)

# service -> (env prefix, default port, has a database and a worker)
SERVICES: dict[str, tuple[str, int]] = {
    "points": ("POINTS", 8001),
    "segmentation": ("SEGMENTATION", 8002),
    "feedback": ("FEEDBACK", 8003),
    "webhooks": ("WEBHOOKS", 8004),
}
GATEWAY_DEFAULT_PORT = 8000
KAFKA_DEFAULT_PORT = 9092


def _say(msg: str) -> None:
    print(f"[loyalty-dev] {msg}", flush=True)


class StartInterrupted(Exception):
    """A stop was asked for while the stack was starting."""


def log_json_from(env: Mapping[str, str], stdout: IO[str]) -> bool:
    """JSON lines unless ``make run`` prints to a terminal (then structlog's coloured console
    lines); ``LOG_JSON=true|false`` decides either way."""
    chosen = env.get("LOG_JSON", "").strip().lower()
    if chosen in ("1", "true", "yes", "on"):
        return True
    if chosen in ("0", "false", "no", "off"):
        return False
    return not stdout.isatty()


@dataclass
class StackConfig:
    data_dir: Path
    gateway_port: int = GATEWAY_DEFAULT_PORT
    ports: dict[str, int] = field(default_factory=lambda: {k: v[1] for k, v in SERVICES.items()})
    kafka_port: int = KAFKA_DEFAULT_PORT
    fast_postgres: bool = False
    database_prefix: str = "loyalty_"
    log_json: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    # API and worker processes per service (REPLICAS): the gateway balances over the APIs;
    # the workers share the consumer groups, elect one relay and share out the jobs
    replicas: int = 1

    @classmethod
    def from_env(cls, data_dir: Path) -> StackConfig:
        env = os.environ
        return cls(
            data_dir=data_dir,
            gateway_port=int(env.get("GATEWAY_PORT", GATEWAY_DEFAULT_PORT)),
            ports={
                name: int(env.get(f"{prefix}_PORT", default))
                for name, (prefix, default) in SERVICES.items()
            },
            kafka_port=int(env.get("KAFKA_PORT", KAFKA_DEFAULT_PORT)),
            replicas=max(1, min(int(env.get("REPLICAS") or 1), 8)),
            log_json=log_json_from(env, sys.stdout),
        )

    def api_port(self, service: str, replica: int = 0) -> int:
        """Replica r of a service listens on its port + 10·r (points :8001, :8011, ...)."""
        return self.ports[service] + 10 * replica

    def worker_metrics_port(self, service: str, replica: int = 0) -> int:
        """The worker's Prometheus port: its API's port + 100 (points :8101, :8111, ...)."""
        return self.api_port(service, replica) + 100

    def process_name(self, service: str, kind: str, replica: int) -> str:
        """``points-api`` with one replica; ``points-api-1``, ``points-api-2`` with more."""
        return f"{service}-{kind}" + (f"-{replica + 1}" if self.replicas > 1 else "")

    def all_ports(self) -> dict[str, int]:
        ports: dict[str, int] = {"gateway": self.gateway_port}
        for service in self.ports:
            for r in range(self.replicas):
                ports[self.process_name(service, "api", r)] = self.api_port(service, r)
                ports[self.process_name(service, "worker metrics", r)] = self.worker_metrics_port(
                    service, r
                )
        return {**ports, "kafka broker": self.kafka_port}


class Stack:
    """``stop_requested`` is asked between the start-up steps and while they wait: once it
    answers True, ``start`` stops what it started so far and raises ``StartInterrupted``."""

    def __init__(
        self, config: StackConfig, stop_requested: Callable[[], bool] = lambda: False
    ) -> None:
        self.config = config
        self.stop_requested = stop_requested
        self.postgres = EmbeddedPostgres(config.data_dir / "postgres", fast=config.fast_postgres)
        self.broker = TansuBroker(config.kafka_port, log_path=config.data_dir / "tansu.log")
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._specs: dict[str, tuple[str, tuple[str, ...], int]] = {}  # name -> how to start it
        self.log: IO[str] = sys.stdout

    # -- helpers --------------------------------------------------------------
    def taken_ports(self) -> dict[str, int]:
        taken = {}
        for name, port in self.config.all_ports().items():
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    taken[name] = port
        return taken

    def database_name(self, service: str) -> str:
        return f"{self.config.database_prefix}{service}"

    def env_for(self, service: str, replica: int = 0) -> dict[str, str]:
        env = {**os.environ, **self.config.extra_env}
        env["PYTHONUNBUFFERED"] = "1"
        if service == "gateway":
            env.update(
                {
                    "GATEWAY_ENVIRONMENT": "dev",
                    "GATEWAY_PORT": str(self.config.gateway_port),
                    "GATEWAY_LOG_JSON": str(self.config.log_json).lower(),
                    "GATEWAY_KAFKA_BOOTSTRAP": self.broker.bootstrap,
                    # what it sends the services in X-Gateway-Token (their *_GATEWAY_SECRET)
                    "GATEWAY_UPSTREAM_SECRET": DEV_GATEWAY_SECRET,
                    **{
                        f"GATEWAY_{name.upper()}_URL": ",".join(
                            f"http://127.0.0.1:{self.config.api_port(name, r)}"
                            for r in range(self.config.replicas)
                        )
                        for name in self.config.ports
                    },
                }
            )
            return env
        prefix, _ = SERVICES[service]
        env.update(
            {
                f"{prefix}_ENVIRONMENT": "dev",
                f"{prefix}_PORT": str(self.config.api_port(service, replica)),
                f"{prefix}_LOG_JSON": str(self.config.log_json).lower(),
                f"{prefix}_DATABASE_URL": self.postgres.url(
                    self.database_name(service), "postgresql+asyncpg"
                ),
                f"{prefix}_KAFKA_BOOTSTRAP": self.broker.bootstrap,
                f"{prefix}_KAFKA_IDEMPOTENT_PRODUCER": "false",
                f"{prefix}_WORKER_METRICS_PORT": str(
                    self.config.worker_metrics_port(service, replica)
                ),
                f"{prefix}_GATEWAY_SECRET": DEV_GATEWAY_SECRET,
            }
        )
        return env

    def _spawn(
        self, name: str, service: str, *args: str, replica: int = 0
    ) -> subprocess.Popen[bytes]:
        self._specs[name] = (service, args, replica)
        proc = subprocess.Popen(
            [sys.executable, "-m", service, *args],
            env=self.env_for(service, replica),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.procs.append((name, proc))
        self._record()
        return proc

    def _record(self) -> None:
        """Write down every process started so far (``state.py``: for a killed launcher)."""
        processes = [Recorded.of(name, proc.pid) for name, proc in self.procs]
        if self.broker.pid is not None:
            processes.append(Recorded.of("kafka broker", self.broker.pid))
        State(Recorded.of("loyalty-dev run", os.getpid()), tuple(processes)).write(
            self.config.data_dir
        )

    def _check_stop(self) -> None:
        if self.stop_requested():
            raise StartInterrupted("stop requested during start-up")

    def _migrate(self) -> None:
        migrations = {
            service: subprocess.Popen(
                [sys.executable, "-m", service, "migrate"], env=self.env_for(service)
            )
            for service in SERVICES
        }
        try:
            while any(proc.poll() is None for proc in migrations.values()):
                self._check_stop()
                time.sleep(0.1)
        finally:
            for proc in migrations.values():
                if proc.poll() is None:  # interrupted: a migration is one transaction
                    proc.terminate()
                    proc.wait()
        failed = [name for name, proc in migrations.items() if proc.returncode != 0]
        if failed:
            raise RuntimeError(f"migrations failed for {', '.join(failed)}")

    # -- lifecycle ----------------------------------------------------------
    def start(self, timeout: float = 180.0) -> None:
        cfg = self.config
        self._check_stop()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self._record()
        _say(f"postgres: starting (data in {self.postgres.data_dir})")
        self.postgres.start()
        self.postgres.wait_ready()
        for service in SERVICES:
            if self.postgres.create_database(self.database_name(service)):
                _say(f"postgres: created database {self.database_name(service)}")
        self._check_stop()
        _say(f"kafka broker (tansu, memory storage): starting on {self.broker.bootstrap}")
        self.broker.start()
        self._record()
        self._check_stop()
        _say(f"applying migrations: {', '.join(SERVICES)}")
        self._migrate()
        for service in SERVICES:
            for r in range(cfg.replicas):
                self._check_stop()
                _say(f"{service}: starting API on :{cfg.api_port(service, r)} and its worker")
                self._spawn(cfg.process_name(service, "api", r), service, "api", replica=r)
                self._spawn(cfg.process_name(service, "worker", r), service, "worker", replica=r)
        _say(f"gateway: starting on :{cfg.gateway_port}")
        self._spawn("gateway", "gateway", "api")
        self.wait_ready(timeout)

    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.config.gateway_port}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = self.gateway_url() + "/ready"
        while time.monotonic() < deadline:
            self._check_stop()
            dead = self.dead_processes()
            if dead:
                raise RuntimeError(f"exited during start-up: {', '.join(dead)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback)
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{url} was not ready within {timeout:.0f}s")

    def dead_processes(self) -> list[str]:
        return [f"{n} (exit {p.returncode})" for n, p in self.procs if p.poll() is not None]

    def stop(self, grace_seconds: float = 2.0) -> None:
        """Stop everything within about five seconds (supervisors often SIGKILL after ~5 s).

        Each child's process group gets SIGTERM together and ``grace_seconds`` to finish;
        whatever is still running is killed, which loses nothing (outbox and inbox make
        that safe). Then the broker and Postgres (fast shutdown, immediate if that overruns).
        The state file goes last: until then a later run can still find what is left.
        """
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                _say(f"stopping {name}")
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for name, proc in self.procs:
            try:
                proc.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"{name} did not stop in {grace_seconds:.1f}s; killing it")
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
        if self.broker.running:
            _say("stopping kafka broker")
        self.broker.stop(grace_seconds=0.2)  # memory only: nothing to lose by killing it
        _say("stopping postgres")
        self.postgres.stop(timeout_seconds=2)
        forget(self.config.data_dir)

    def kafka_alive(self) -> bool:
        return port_open("127.0.0.1", self.config.kafka_port)

    # -- what the fault suite does to it (loyalty_shared.devstack.faults) --------------------
    def process(self, name: str) -> subprocess.Popen[bytes]:
        for known, proc in self.procs:
            if known == name:
                return proc
        raise KeyError(name)

    def signal(self, name: str, signum: int) -> None:
        """Send a signal to a process's whole group (SIGKILL, SIGSTOP, SIGCONT)."""
        _signal_group(self.process(name), signum)

    def respawn(self, name: str) -> subprocess.Popen[bytes]:
        """Start a process that died (or was killed) again, as it was started."""
        old = self.process(name)
        if old.poll() is None:
            raise RuntimeError(f"{name} is still running")
        self.procs = [(n, p) for n, p in self.procs if n != name]
        service, args, replica = self._specs[name]
        return self._spawn(name, service, *args, replica=replica)


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    """The child leads a process group of its own (uvicorn's worker processes included)."""
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:  # already gone (its group with it)
        pass
