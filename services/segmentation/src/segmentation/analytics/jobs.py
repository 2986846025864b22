"""Recompute jobs: a row per run with status and progress; run in the API process or the worker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.problems import NotFound
from loyalty_shared.runtime import sleep_or_stop
from segmentation.analytics.models import Job
from segmentation.analytics.recompute import recompute
from segmentation.settings import SegmentationSettings

log = structlog.get_logger("segmentation.jobs")

RECOMPUTE = "recompute"


class JobNotFound(NotFound):
    slug = "job-not-found"
    title = "Job not found"


async def create_job(
    session: AsyncSession, as_of: datetime, job_id: str | None = None
) -> str | None:
    """Insert a queued job; returns its id, or None if ``job_id`` exists already."""
    job_id = job_id or f"job_{uuid.uuid4().hex}"
    inserted = (
        await session.execute(
            insert(Job)
            .values(job_id=job_id, kind=RECOMPUTE, status="queued", progress=0.0, as_of=as_of)
            .on_conflict_do_nothing()
            .returning(Job.job_id)
        )
    ).scalar_one_or_none()
    return inserted


async def get_job(session: AsyncSession, job_id: str) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
    return job


async def run_job(
    sessionmaker: async_sessionmaker[AsyncSession], settings: SegmentationSettings, job_id: str
) -> None:
    async def set_state(**values: Any) -> None:
        async with sessionmaker() as s, s.begin():
            await s.execute(update(Job).where(Job.job_id == job_id).values(**values))

    async def progress(fraction: float, step: str) -> None:
        await set_state(progress=fraction, step=step)

    async with sessionmaker() as s:
        job = await s.get(Job, job_id)
        assert job is not None
        as_of = job.as_of
    await set_state(status="running", started_at=func.now(), progress=0.0)
    try:
        async with sessionmaker() as session, session.begin():
            result = await recompute(session, settings, as_of, progress)
    except asyncio.CancelledError:
        await set_state(
            status="failed", error="cancelled (process stopped)", finished_at=func.now()
        )
        raise
    except Exception as exc:
        log.exception("recompute_failed", job_id=job_id)
        await set_state(
            status="failed", error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=func.now()
        )
        return
    await set_state(
        status="succeeded", progress=1.0, step="done", result=result, finished_at=func.now()
    )
    log.info("recompute_succeeded", job_id=job_id, population=result.get("population"))


def next_daily_run(now: datetime, hour: int) -> datetime:
    run = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return run if run > now else run + timedelta(days=1)


class DailyRecompute:
    """Worker loop: at ``recompute_hour_utc`` every day, one recompute as of that instant.

    The job id is ``daily-YYYY-MM-DD``, so several workers start it once.
    """

    def __init__(
        self, settings: SegmentationSettings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = datetime.now(UTC)
            due = next_daily_run(now, self.settings.recompute_hour_utc)
            await sleep_or_stop(stop, (due - now).total_seconds())
            if stop.is_set():
                return
            await self.run_once(due)

    async def run_once(self, as_of: datetime) -> str | None:
        async with self.sessionmaker() as session, session.begin():
            job_id = await create_job(session, as_of, f"daily-{as_of.date().isoformat()}")
        if job_id is not None:
            await run_job(self.sessionmaker, self.settings, job_id)
        return job_id


class JobRunner:
    """Runs recompute jobs as tasks of the API process (kept so shutdown can cancel them)."""

    def __init__(
        self, settings: SegmentationSettings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, job_id: str) -> None:
        task = asyncio.create_task(run_job(self.sessionmaker, self.settings, job_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
