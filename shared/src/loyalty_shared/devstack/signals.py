"""SIGINT, SIGTERM and SIGHUP as a stop request the launcher's main loop can wait on.

A Python signal handler runs in the main thread between two bytecodes, wherever that
thread is: inside another handler, or while it holds a lock. A handler that takes a lock
can therefore deadlock its own thread. ``threading.Event.set()`` takes the lock of the
event's condition: two signals close together (a double Ctrl-C, or a process-group
SIGTERM that also reaches the launcher through ``make``) once left ``loyalty-dev run``
blocked for good in a handler nested inside another, deaf to every later signal.

Here the handler takes no lock: it sets a plain attribute and writes one byte to a
non-blocking pipe. Both are safe to repeat and to nest; the main loop waits on the pipe
with ``select``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def install(self) -> None:
        """Handle the stop signals (a SIGHUP ignored by ``nohup`` stays ignored)."""
        for signum in STOP_SIGNALS:
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue
            signal.signal(signum, self.handle)

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        # A full pipe means a wake-up is already pending; nothing else can go wrong here.
        with contextlib.suppress(OSError):
            os.write(self._write, b"\0")

    def requested(self) -> bool:
        return self.signum is not None

    def wait(self, timeout: float) -> bool:
        """Sleep until a stop is requested or ``timeout`` seconds pass; True if requested."""
        if not self.requested():
            select.select([self._read], [], [], timeout)
        with contextlib.suppress(OSError):
            while os.read(self._read, 512):
                pass
        return self.requested()
