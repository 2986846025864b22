"""`make run` always stops: on signals close together, and after its launcher was killed.

Each test starts a real ``loyalty-dev run`` (the command behind ``make run``) on free ports.
The three share one data dir, so Postgres is initialised and migrated once. "Nothing is
left" means: no process the launcher recorded, no Postgres on the data dir, no process at
all whose command line or environment names the data dir (services, their uvicorn
workers, migrations), and every port of the stack free.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loyalty_shared.devstack.broker import free_port
from loyalty_shared.devstack.postgres import EmbeddedPostgres
from loyalty_shared.devstack.stack import Stack, StackConfig
from loyalty_shared.devstack.state import Recorded, State, start_time

pytestmark = pytest.mark.e2e

# Hang guards only: the launcher is meant to stop within 5 s and to start within ~60 s on
# a loaded 2-core machine. These bound how long a broken launcher can hold the suite.
START_GUARD_SECONDS = 240.0
STOP_GUARD_SECONDS = 15.0
CLI = (sys.executable, "-m", "loyalty_shared.devstack.cli")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("devstack-stop")
    yield path
    EmbeddedPostgres(path / "postgres").stop()  # whatever a failed test left


class Launch:
    """One ``loyalty-dev run`` on free ports; its output (and its children's) in a file."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.data_dir = data_dir
        self.config = StackConfig(
            data_dir=data_dir,
            gateway_port=free_port(),
            ports={n: free_port() for n in ("points", "segmentation", "feedback", "webhooks")},
            kafka_port=free_port(),
        )
        env = {
            **os.environ,
            "GATEWAY_PORT": str(self.config.gateway_port),
            **{f"{n.upper()}_PORT": str(p) for n, p in self.config.ports.items()},
            "KAFKA_PORT": str(self.config.kafka_port),
        }
        self.log_path = data_dir / f"{name}.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [*CLI, "run", "--data-dir", str(data_dir)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a signal meant for it reaches nothing else
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + START_GUARD_SECONDS
        while text not in self.output():
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output()}"
            time.sleep(0.1)

    def recorded(self) -> list[Recorded]:
        state = State.read(self.data_dir)
        assert state is not None, "the launcher keeps no record of what it started"
        postgres = _postmaster(self.data_dir)
        return [*state.processes, *([postgres] if postgres else [])]

    def exit_code(self) -> int:
        try:
            return self.proc.wait(STOP_GUARD_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"still running {STOP_GUARD_SECONDS:.0f}s after the stop:\n{self.output()}")

    def assert_nothing_left(self, recorded: list[Recorded]) -> None:
        alive = [f"{p.name} (pid {p.pid})" for p in recorded if p.alive()]
        alive += [f"pid {pid}: {cmd}" for pid, cmd in _processes_naming(self.data_dir)]
        assert alive == [], f"left running: {alive}\n{self.output()}"
        assert _postmaster(self.data_dir) is None, "postgres still running"
        assert Stack(self.config).taken_ports() == {}, self.output()


def _postmaster(data_dir: Path) -> Recorded | None:
    postgres = EmbeddedPostgres(data_dir / "postgres")
    if not postgres.is_running():
        return None
    pid = int((postgres.pgdata / "postmaster.pid").read_text().split()[0])
    return Recorded.of("postgres", pid)


def _processes_naming(data_dir: Path) -> list[tuple[int, str]]:
    """Running processes whose command line or environment mentions ``data_dir``."""
    needle = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if (needle in cmdline or needle in environ) and start_time(int(entry.name)) is not None:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


def _two_signals(pid: int, first: signal.Signals, second: signal.Signals) -> None:
    os.kill(pid, first)
    time.sleep(0.01)
    os.kill(pid, second)


def test_two_signals_during_start_up_stop_everything(data_dir: Path) -> None:
    """The start-up (migrations, then the services and their readiness) is cut short."""
    run = Launch(data_dir, "start-up")
    run.wait_for("applying migrations")
    recorded = run.recorded()
    _two_signals(run.proc.pid, signal.SIGTERM, signal.SIGTERM)
    assert run.exit_code() == 0, run.output()
    run.assert_nothing_left(recorded)
    assert "Loyalty platform is up" not in run.output()


def test_two_signals_10ms_apart_stop_the_running_stack(data_dir: Path) -> None:
    run = Launch(data_dir, "running")
    run.wait_for("Loyalty platform is up")
    recorded = run.recorded()
    assert {p.name for p in recorded} >= {"gateway", "points-api", "kafka broker", "postgres"}
    _two_signals(run.proc.pid, signal.SIGINT, signal.SIGTERM)
    assert run.exit_code() == 0, run.output()
    run.assert_nothing_left(recorded)
    assert State.read(data_dir) is None  # the record goes once everything is stopped


def test_loyalty_dev_stop_cleans_up_after_a_killed_launcher(data_dir: Path) -> None:
    run = Launch(data_dir, "killed")
    run.wait_for("Loyalty platform is up")
    recorded = run.recorded()
    run.proc.kill()  # SIGKILL: no chance to clean up; Postgres is daemonised and stays
    run.proc.wait()
    assert _postmaster(data_dir) is not None
    stop = subprocess.run(
        [*CLI, "stop", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "postgres" in stop.stdout
    run.assert_nothing_left(recorded)
    assert State.read(data_dir) is None
