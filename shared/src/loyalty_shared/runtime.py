"""Process lifecycle for workers: a stop event wired to SIGINT/SIGTERM, and interruptible sleeps."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("loyalty.runtime")


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` unless ``stop`` is set first."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_until_stopped(*workers: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run workers until SIGINT/SIGTERM, then let each finish its current step."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    tasks = [asyncio.create_task(w(stop)) for w in workers]
    done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        if task.exception() is not None and not stop.is_set():
            log.error("worker_crashed", error=repr(task.exception()))
            stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
