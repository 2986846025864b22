"""Recompute jobs: a row per run with status, progress and a heartbeat; run in the API process
(``POST /v1/analytics/recompute``) or the worker (the daily run).

One at a time: a runner takes the transaction-level advisory lock ``segmentation-recompute``
before it marks its job running and keeps it until the job's final state commits (the
success is written in the recompute's own transaction), and a unique partial index allows
one ``running`` row per kind. A queued job waits for the lock.

Recovery from a crashed process (its row would stay ``running`` or ``queued`` forever):
- while a job is queued or running its runner refreshes ``heartbeat_at`` every
  ``job_heartbeat_seconds`` (and with every progress step); a job whose heartbeat is older
  than ``job_stale_after_seconds`` is marked failed with the reason. This runs when the API
  or the worker starts, periodically in the worker, and before a new recompute is accepted;
- whoever holds the lock knows that any other ``running`` row lost its runner (a live
  runner holds the lock), so it fails it at once instead of waiting for the timeout;
- a runner whose job was failed as stale (its process was frozen longer than the timeout)
  notices at its next heartbeat, abandons the work and rolls back: a failed job never
  commits scores.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared import idempotency
from loyalty_shared.deadlocks import retry_on_deadlock
from loyalty_shared.idempotency import IdempotencyKeyReused
from loyalty_shared.pipeline import Jobs
from loyalty_shared.problems import Conflict, NotFound
from loyalty_shared.replays import fingerprint, replay_or_conflict
from loyalty_shared.runtime import sleep_or_stop
from segmentation.analytics.models import Job
from segmentation.analytics.recompute import recompute
from segmentation.db import idempotency_keys
from segmentation.settings import SegmentationSettings

log = structlog.get_logger("segmentation.jobs")

RECOMPUTE = "recompute"
ACTIVE = ("queued", "running")

# the same key recompute() itself takes (advisory locks are re-entrant within a session)
_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('segmentation-recompute'))")
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtext('segmentation-recompute'))")
# serialises "is one active? then insert" between concurrent POSTs
_REQUEST_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('segmentation-recompute-request'))")

ORPHANED = "runner gone: the job was running but no process held the recompute lock"


class JobNotFound(NotFound):
    slug = "job-not-found"
    title = "Job not found"


class RecomputeInProgress(Conflict):
    slug = "recompute-in-progress"
    title = "A recompute is already queued or running"


class JobAbandoned(Exception):
    """The job row is no longer ours to finish (failed as stale while we ran)."""


async def create_job(
    session: AsyncSession,
    as_of: datetime,
    job_id: str | None = None,
    *,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> str | None:
    """Insert a queued job; returns its id, or None if ``job_id`` exists already."""
    job_id = job_id or f"job_{uuid.uuid4().hex}"
    inserted = (
        await session.execute(
            insert(Job)
            .values(
                job_id=job_id,
                kind=RECOMPUTE,
                status="queued",
                progress=0.0,
                as_of=as_of,
                heartbeat_at=func.now(),
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
            .on_conflict_do_nothing()
            .returning(Job.job_id)
        )
    ).scalar_one_or_none()
    return inserted


async def request_recompute(
    session: AsyncSession,
    settings: SegmentationSettings,
    as_of: datetime | None,
    idempotency_key: str | None = None,
) -> tuple[str, datetime, bool]:
    """A new queued recompute as of ``as_of`` (default now), unless one is queued or running
    (after failing stale ones). Returns (job id, as_of, replayed): the same Idempotency-Key
    and body give the first request's job back."""
    await session.execute(_REQUEST_LOCK)
    digest = fingerprint({"as_of": as_of.isoformat() if as_of else None})
    if idempotency_key is not None:
        first = (
            await session.execute(
                select(Job.job_id, Job.as_of, Job.request_hash).where(
                    Job.idempotency_key == idempotency_key
                )
            )
        ).first()
        if first is not None:
            return replay_or_conflict(
                first.request_hash,
                digest,
                lambda: (first.job_id, first.as_of, True),
                lambda: IdempotencyKeyReused(
                    "this Idempotency-Key was used with a different request",
                    job_id=first.job_id,
                ),
            )
    await fail_stale_jobs(session, settings.job_stale_after_seconds)
    if (await session.execute(_TRY_LOCK)).scalar_one():
        # nobody runs a recompute now (held until this request commits): a 'running' row
        # is a dead process's, fail it rather than wait for its heartbeat to go stale
        await fail_orphaned_jobs(session)
    active = (
        await session.execute(
            select(Job.job_id, Job.status)
            .where(Job.kind == RECOMPUTE, Job.status.in_(ACTIVE))
            .order_by(Job.created_at)
            .limit(1)
        )
    ).first()
    if active is not None:
        raise RecomputeInProgress(
            f"recompute {active.job_id} is {active.status}: wait for it (GET /v1/jobs/"
            f"{active.job_id}) and ask again",
            job_id=active.job_id,
            job_status=active.status,
        )
    as_of = as_of or datetime.now(UTC)
    job_id = await create_job(session, as_of, idempotency_key=idempotency_key, request_hash=digest)
    assert job_id is not None
    return job_id, as_of, False


async def get_job(session: AsyncSession, job_id: str) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
    return job


async def fail_stale_jobs(session: AsyncSession, stale_after_seconds: float) -> list[str]:
    """Fail every queued or running recompute whose heartbeat is older than the timeout."""
    rows = await session.execute(
        text(
            "UPDATE jobs SET status = 'failed', finished_at = now(), "
            "error = format('stale: no heartbeat since %s (more than %s s): its process "
            "stopped; request a new recompute', "
            "to_char(COALESCE(heartbeat_at, created_at) AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\'), :secs) '
            "WHERE kind = :kind AND status IN ('queued', 'running') "
            "AND COALESCE(heartbeat_at, created_at) < now() - make_interval(secs => :secs) "
            "RETURNING job_id"
        ),
        {"kind": RECOMPUTE, "secs": stale_after_seconds},
    )
    failed = list(rows.scalars())
    if failed:
        log.warning("stale_jobs_failed", job_ids=failed)
    return failed


async def fail_orphaned_jobs(session: AsyncSession, except_job: str | None = None) -> list[str]:
    """Fail every ``running`` recompute but ``except_job``: only call while holding the lock."""
    stmt = (
        update(Job)
        .where(Job.kind == RECOMPUTE, Job.status == "running")
        .values(status="failed", error=ORPHANED, finished_at=func.now())
        .returning(Job.job_id)
    )
    if except_job is not None:
        stmt = stmt.where(Job.job_id != except_job)
    failed = list((await session.execute(stmt)).scalars())
    if failed:
        log.warning("orphaned_jobs_failed", job_ids=failed)
    return failed


async def recover_jobs(
    sessionmaker: async_sessionmaker[AsyncSession], settings: SegmentationSettings
) -> list[str]:
    """Start-up / periodic recovery: fail stale jobs, and running ones nobody holds the lock for.

    Never raises (the database may be unreachable for a moment): logs and returns []."""
    try:
        async with sessionmaker() as session, session.begin():
            failed = await fail_stale_jobs(session, settings.job_stale_after_seconds)
            if (await session.execute(_TRY_LOCK)).scalar_one():
                failed += await fail_orphaned_jobs(session)
    except Exception:
        log.exception("job_recovery_failed")
        return []
    return failed


async def run_job(
    sessionmaker: async_sessionmaker[AsyncSession], settings: SegmentationSettings, job_id: str
) -> None:
    """Run a queued job to its end state; a heartbeat runs beside it."""
    work = asyncio.create_task(_run_locked(sessionmaker, settings, job_id))
    abandoned = asyncio.Event()
    beat = asyncio.create_task(_heartbeat(sessionmaker, settings, job_id, work, abandoned))
    try:
        await work
    except asyncio.CancelledError:
        if abandoned.is_set() and not _cancelling():
            log.warning("recompute_abandoned", job_id=job_id)
            return
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        await _finish_elsewhere(
            sessionmaker, job_id, status="failed", error="cancelled (process stopped)"
        )
        raise
    except JobAbandoned:
        log.warning("recompute_abandoned", job_id=job_id)
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _heartbeat(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: SegmentationSettings,
    job_id: str,
    work: asyncio.Task[None],
    abandoned: asyncio.Event,
) -> None:
    while not work.done():
        await asyncio.sleep(settings.job_heartbeat_seconds)
        try:
            async with sessionmaker() as s, s.begin():
                alive = (
                    await s.execute(
                        update(Job)
                        .where(Job.job_id == job_id, Job.status.in_(ACTIVE))
                        .values(heartbeat_at=func.now())
                        .returning(Job.job_id)
                    )
                ).scalar_one_or_none()
        except Exception:  # a database blip: try again at the next beat
            log.warning("job_heartbeat_failed", job_id=job_id, exc_info=True)
            continue
        if alive is None and not work.done():
            # failed as stale by someone else (we were frozen too long): stop, roll back
            abandoned.set()
            work.cancel()
            return


async def _finish_elsewhere(
    sessionmaker: async_sessionmaker[AsyncSession], job_id: str, **values: Any
) -> None:
    """End state from a session of its own (the work's transaction is gone)."""
    async with sessionmaker() as s, s.begin():
        await s.execute(
            update(Job)
            .where(Job.job_id == job_id, Job.status.in_(ACTIVE))
            .values(finished_at=func.now(), heartbeat_at=func.now(), **values)
        )


async def _run_locked(
    sessionmaker: async_sessionmaker[AsyncSession], settings: SegmentationSettings, job_id: str
) -> None:
    async def progress(fraction: float, step: str) -> None:
        async with sessionmaker() as s, s.begin():
            await s.execute(
                update(Job)
                .where(Job.job_id == job_id, Job.status == "running")
                .values(progress=fraction, step=step, heartbeat_at=func.now())
            )

    error: str | None = None
    result: dict[str, Any] | None = None
    try:
        async with sessionmaker() as session, session.begin():
            await session.execute(_LOCK)  # waits (queued, heartbeating) while another runs
            started = await _start(sessionmaker, job_id)
            if started is None:
                raise JobAbandoned(job_id)
            try:
                # in a savepoint, run again if it loses a deadlock (loyalty_shared.deadlocks)
                result = await retry_on_deadlock(
                    session, lambda: recompute(session, settings, started, progress)
                )
            except (asyncio.CancelledError, JobAbandoned):
                raise
            except Exception as exc:  # rolled back to the savepoint: the job row stays
                log.exception("recompute_failed", job_id=job_id)
                error = f"{type(exc).__name__}: {exc}"[:2000]
            # the end state commits with the scores and releases the lock in the same commit
            ended = (
                await session.execute(
                    update(Job)
                    .where(Job.job_id == job_id, Job.status == "running")
                    .values(
                        status="failed" if error else "succeeded",
                        error=error,
                        progress=1.0 if error is None else Job.progress,
                        step="done" if error is None else Job.step,
                        result=result,
                        finished_at=func.now(),
                        heartbeat_at=func.now(),
                    )
                    .returning(Job.job_id)
                )
            ).scalar_one_or_none()
            if ended is None:
                raise JobAbandoned(job_id)
    except (asyncio.CancelledError, JobAbandoned):
        raise
    except Exception as exc:  # the transaction itself failed (lost connection, commit error)
        log.exception("recompute_failed", job_id=job_id)
        await _finish_elsewhere(
            sessionmaker, job_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        return
    if error is None:
        log.info("recompute_succeeded", job_id=job_id, population=(result or {}).get("population"))


async def _start(sessionmaker: async_sessionmaker[AsyncSession], job_id: str) -> datetime | None:
    """With the lock held: fail orphaned running jobs, mark ours running; its as_of, or None
    if the job is not queued any more."""
    async with sessionmaker() as s, s.begin():
        await fail_orphaned_jobs(s, except_job=job_id)
        return (
            await s.execute(
                update(Job)
                .where(Job.job_id == job_id, Job.status == "queued")
                .values(
                    status="running", started_at=func.now(), progress=0.0, heartbeat_at=func.now()
                )
                .returning(Job.as_of)
            )
        ).scalar_one_or_none()


def next_daily_run(now: datetime, hour: int) -> datetime:
    run = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return run if run > now else run + timedelta(days=1)


class DailyRecompute:
    """Worker loop: at ``recompute_hour_utc`` every day, one recompute as of that instant.

    The job id is ``daily-YYYY-MM-DD``, so several workers start it once. Between runs it
    fails stale jobs every ``job_stale_after_seconds`` (and once at start-up).
    """

    def __init__(
        self, settings: SegmentationSettings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.jobs = Jobs(settings.service_name, sessionmaker)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._loop(stop)
        finally:
            await self.jobs.close()  # another replica takes the jobs over at once

    async def _loop(self, stop: asyncio.Event) -> None:
        await self.jobs.step(
            "recover-stale-jobs", partial(recover_jobs, self.sessionmaker, self.settings), stop
        )
        due = next_daily_run(datetime.now(UTC), self.settings.recompute_hour_utc)
        while not stop.is_set():
            now = datetime.now(UTC)
            if now >= due:
                # retried through transient failures; recorded in job_runs
                await self.jobs.step("daily-recompute", partial(self.run_once, due), stop)
                due = next_daily_run(datetime.now(UTC), self.settings.recompute_hour_utc)
                continue
            wait = min((due - now).total_seconds(), self.settings.job_stale_after_seconds)
            await sleep_or_stop(stop, wait)
            if not stop.is_set() and datetime.now(UTC) < due:
                await self.jobs.step(
                    "recover-stale-jobs",
                    partial(recover_jobs, self.sessionmaker, self.settings),
                    stop,
                )

    async def run_once(self, as_of: datetime) -> str | None:
        async with self.sessionmaker() as session, session.begin():
            # the daily housekeeping: stored Idempotency-Key answers past their retention
            await idempotency.prune(
                session,
                idempotency_keys,
                as_of - timedelta(hours=self.settings.idempotency_retention_hours),
            )
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

    async def recover(self) -> list[str]:
        """At start-up; never fatal (the database may not be reachable yet)."""
        return await recover_jobs(self.sessionmaker, self.settings)

    def start(self, job_id: str) -> None:
        task = asyncio.create_task(run_job(self.sessionmaker, self.settings, job_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
