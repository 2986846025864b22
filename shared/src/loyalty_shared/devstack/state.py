"""What a ``loyalty-dev run`` has started, written down in its data dir.

A launcher killed with SIGKILL cannot clean up: Postgres (daemonised by ``pg_ctl``) keeps
running, and the services may still be in their graceful shutdown. The state file
(``<data dir>/loyalty-dev.json``) names the launcher and every process it started, each
with its start time (``/proc/<pid>/stat``), so that a later ``loyalty-dev run`` or
``loyalty-dev stop`` stops exactly those processes and never one that merely reuses a pid.
Postgres is stopped through ``pg_ctl`` on its data dir, with or without a state file.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from loyalty_shared.devstack.postgres import EmbeddedPostgres

STATE_FILE = "loyalty-dev.json"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None if it is gone.

    A zombie (exited, not yet reaped by its new parent) counts as gone: it holds no port,
    no file and no memory worth speaking of, and no signal can stop it further.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class Recorded:
    """One process the launcher started (or the launcher itself), as it was when started."""

    name: str
    pid: int
    started: int | None

    @classmethod
    def of(cls, name: str, pid: int) -> Recorded:
        return cls(name, pid, start_time(pid))

    def alive(self) -> bool:
        """Still the same process: running, and started when it was recorded."""
        now = start_time(self.pid)
        return now is not None and (self.started is None or now == self.started)

    def signal_group(self, signum: int) -> None:
        """Signal its process group (it leads one: started in a session of its own)."""
        if not self.alive():
            return
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:  # not a group leader after all: the process alone
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass


@dataclass(frozen=True)
class State:
    launcher: Recorded
    processes: tuple[Recorded, ...]

    def write(self, data_dir: Path) -> None:
        path = data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        doc = {"launcher": asdict(self.launcher), "processes": [asdict(p) for p in self.processes]}
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(path)  # atomic: a reader sees the old record or the new one

    @classmethod
    def read(cls, data_dir: Path) -> State | None:
        try:
            doc = json.loads((data_dir / STATE_FILE).read_text())
            return cls(Recorded(**doc["launcher"]), tuple(Recorded(**p) for p in doc["processes"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def forget(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def live_launcher(data_dir: Path) -> Recorded | None:
    """The ``loyalty-dev run`` that uses this data dir, if one is running (not this process)."""
    state = State.read(data_dir)
    if state is None or state.launcher.pid == os.getpid() or not state.launcher.alive():
        return None
    return state.launcher


def _wait_gone(processes: list[Recorded], seconds: float) -> list[Recorded]:
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in processes if p.alive()]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def stop_leftovers(
    data_dir: Path, say: Callable[[str], None], *, launcher_grace: float = 10.0
) -> list[str]:
    """Stop whatever a previous launcher on ``data_dir`` left running; say what was stopped.

    A launcher still alive is asked to stop (SIGTERM: it stops its own stack) and killed if
    it has not within ``launcher_grace`` seconds; its recorded processes get SIGTERM, then
    SIGKILL after 3 s; Postgres is stopped with ``pg_ctl``. Returns the names it stopped.
    """
    stopped: list[str] = []
    state = State.read(data_dir)
    if state is not None:
        launcher = state.launcher
        if launcher.pid != os.getpid() and launcher.alive():
            say(f"asking loyalty-dev run (pid {launcher.pid}) to stop")
            os.kill(launcher.pid, signal.SIGTERM)
            if _wait_gone([launcher], launcher_grace):
                say(f"loyalty-dev run (pid {launcher.pid}) did not stop; killing it")
                os.kill(launcher.pid, signal.SIGKILL)
            stopped.append("loyalty-dev run")
        left = [p for p in state.processes if p.alive()]
        for process in left:
            say(f"stopping leftover {process.name} (pid {process.pid})")
            process.signal_group(signal.SIGTERM)
        for process in _wait_gone(left, 3.0):
            say(f"{process.name} (pid {process.pid}) did not stop; killing it")
            process.signal_group(signal.SIGKILL)
        _wait_gone(left, 3.0)
        stopped.extend(p.name for p in left)
    postgres = EmbeddedPostgres(data_dir / "postgres")
    if postgres.is_running():
        say(f"stopping leftover postgres (data in {postgres.data_dir})")
        postgres.stop()
        stopped.append("postgres")
    forget(data_dir)
    return stopped
