"""A periodic job runs on one replica at a time, and another takes it over when the holder
dies (real Postgres; the holder is a real process killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from loyalty_shared.db import create_sessionmaker
from loyalty_shared.pipeline import Jobs
from loyalty_shared.testing import eventually


def _replica(url: str) -> Jobs:
    """A second process's view: its own engine, pool and connections."""
    return Jobs("svc", create_sessionmaker(create_async_engine(url)))


async def test_one_replica_runs_a_job_the_other_stands_by_until_it_gives_up(
    events_db: Any,
) -> None:
    first, second = _replica(events_db.url), _replica(events_db.url)
    stop = asyncio.Event()
    runs: list[str] = []

    async def expiry(who: str) -> str:
        runs.append(who)
        return who

    try:
        assert await first.step("expiry", lambda: expiry("first"), stop) == "first"
        assert await second.step("expiry", lambda: expiry("second"), stop) is None
        assert await first.step("expiry", lambda: expiry("first"), stop) == "first"
        # another job is free for whoever asks first
        assert await second.step("breaches", lambda: expiry("second"), stop) == "second"
        assert runs == ["first", "first", "second"]

        await first.close()  # a clean shutdown hands the job over at once
        assert await second.step("expiry", lambda: expiry("second"), stop) == "second"
    finally:
        await first.close()
        await second.close()


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from sqlalchemy.ext.asyncio import create_async_engine
    from loyalty_shared.db import create_sessionmaker
    from loyalty_shared.pipeline import Jobs

    async def main():
        jobs = Jobs("svc", create_sessionmaker(create_async_engine(sys.argv[1])))
        async def nothing():
            return True
        assert await jobs.step("expiry", nothing, asyncio.Event())
        print("held", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_when_the_holder_is_killed_another_replica_takes_the_job_over(
    events_db: Any,
) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        events_db.url,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    standby = _replica(events_db.url)
    stop = asyncio.Event()
    try:
        assert holder.stdout is not None
        line = b""
        while line.strip() != b"held":  # (its log lines come first)
            line = await asyncio.wait_for(holder.stdout.readline(), timeout=60)
            assert line, "the holder exited"

        async def expiry() -> str:
            return "taken over"

        assert await standby.step("expiry", expiry, stop) is None  # the holder is alive
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        taken = await eventually(lambda: standby.step("expiry", expiry, stop), timeout=30)
        assert taken == "taken over"
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await standby.close()
