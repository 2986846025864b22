"""The sender: claims due deliveries and POSTs them, each attempt a task of its own.

- Bounded: at most ``max_in_flight`` attempts at once in a worker, and at most
  ``max_in_flight_per_subscription`` to one subscription over every worker (the claim counts
  the leases in the database). An endpoint that hangs holds its own slots until its timeout,
  never another subscription's.
- Every attempt resolves the host and checks each address again (``targets.pinned``), then
  connects to the checked address, with the name in ``Host`` and in TLS's SNI (the
  certificate is verified for the name).
- No redirects are followed (a 3xx is a failed attempt): the URL is the one that was checked.
- A failed attempt is retried after ``retry_base_seconds`` doubled per attempt (up to
  ``retry_max_delay_seconds``), scaled by a random 1 ± ``retry_jitter``, until
  ``give_up_at``; then the delivery is failed, and after ``pause_after_failed_deliveries``
  failed in a row its subscription is paused, with the reason.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.failures import describe, is_transient
from loyalty_shared.runtime import sleep_or_stop
from webhooks.deliveries import metrics
from webhooks.deliveries.repository import Claimed, Outcome, claim, finish
from webhooks.deliveries.signing import SigningKey, request_headers
from webhooks.settings import WebhooksSettings
from webhooks.subscriptions.targets import TargetPolicy, TargetRefused, pinned

log = structlog.get_logger("webhooks.sender")

ANSWER_BYTES = 512
DRAIN_SECONDS = 5.0  # at a stop, attempts in flight get this long to finish


def retry_delay(settings: WebhooksSettings, attempt: int, rng: random.Random) -> float:
    """The wait after the ``attempt``-th failed attempt: exponential, capped, jittered."""
    base = min(
        settings.retry_base_seconds * 2 ** min(attempt - 1, 40), settings.retry_max_delay_seconds
    )
    return float(base) * rng.uniform(1 - settings.retry_jitter, 1 + settings.retry_jitter)


def signing_keys(claimed: Claimed, now: datetime) -> list[SigningKey]:
    keys = [SigningKey(claimed.secret_key_id, claimed.secret)]
    expires = claimed.previous_secret_expires_at
    if claimed.previous_secret and expires is not None and expires > now:
        keys.append(SigningKey(claimed.secret_key_id - 1, claimed.previous_secret))
    return keys


class Sender:
    def __init__(
        self,
        settings: WebhooksSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        wake: asyncio.Event | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.wake = wake or asyncio.Event()
        self.policy = TargetPolicy.for_environment(
            is_dev=settings.is_dev, allow_private=settings.allow_private_targets
        )
        self._transport = transport
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()

    async def run(self, stop: asyncio.Event) -> None:
        timeout = httpx.Timeout(
            self.settings.timeout_seconds, connect=self.settings.connect_timeout_seconds
        )
        limits = httpx.Limits(
            max_connections=self.settings.max_in_flight, max_keepalive_connections=8
        )
        async with httpx.AsyncClient(
            timeout=timeout, limits=limits, follow_redirects=False, transport=self._transport
        ) as client:
            try:
                await self._loop(client, stop)
            finally:
                await self._drain()

    async def _loop(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            self.wake.clear()
            room = self.settings.max_in_flight - len(self._tasks)
            claimed: list[Claimed] = []
            if room > 0:
                try:
                    claimed = await self._claim(room)
                    backoff = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning(
                        "webhook_claim_failed", error=describe(exc, 300), retry_in_s=backoff
                    )
                    await sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, self.settings.consumer_max_backoff_seconds)
                    continue
            for one in claimed:
                task = asyncio.create_task(self._deliver(client, one))
                self._tasks.add(task)
                task.add_done_callback(self._done)
            metrics.IN_FLIGHT.set(len(self._tasks))
            if claimed and len(claimed) == room:
                continue  # more may be due
            await self._wait(stop)

    async def _wait(self, stop: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(
                waits, timeout=self.settings.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waits:
                w.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        metrics.IN_FLIGHT.set(len(self._tasks))
        self.wake.set()  # a slot is free; the member's next delivery may be due
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook_attempt_crashed", error=repr(task.exception()))

    async def _drain(self) -> None:
        """On stop: give attempts in flight their timeout, then cancel (their leases run out
        and another worker attempts them again)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.timeout_seconds + 1)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _claim(self, room: int) -> list[Claimed]:
        async with self.sessionmaker() as session, session.begin():
            return await claim(
                session,
                room=room,
                per_subscription=self.settings.max_in_flight_per_subscription,
                lease=self.settings.lease_seconds,
            )

    async def _deliver(self, client: httpx.AsyncClient, claimed: Claimed) -> None:
        structlog.contextvars.bind_contextvars(
            delivery_id=claimed.id, subscription_id=claimed.subscription_id
        )
        started = time.perf_counter()
        attempted_at = datetime.now(claimed.claimed_at.tzinfo)
        status_code, error, kind = await self._post(client, claimed, attempted_at)
        elapsed = time.perf_counter() - started
        delivered = error is None
        next_at: datetime | None = None
        if not delivered:
            delay = retry_delay(self.settings, claimed.attempt, self._rng)
            candidate = attempted_at + timedelta(seconds=delay)
            next_at = candidate if candidate < claimed.give_up_at else None
        outcome = Outcome(delivered, status_code, int(elapsed * 1000), error, attempted_at, next_at)
        paused = await self._finish(claimed, outcome)
        sub = claimed.subscription_id
        metrics.ATTEMPTS.labels(sub, outcome.name).inc()
        metrics.ATTEMPT_SECONDS.labels(sub).observe(elapsed)
        if kind is not None:
            metrics.FAILURES.labels(sub, kind).inc()
        log.info(
            "webhook_attempt",
            event_id=claimed.event_id,
            event_type=claimed.event_type,
            attempt=claimed.attempt,
            outcome=outcome.name,
            status_code=status_code,
            latency_ms=outcome.latency_ms,
            error=error,
            next_attempt_at=next_at.isoformat() if next_at else None,
        )
        if paused:
            log.warning("webhook_subscription_paused", reason="failed deliveries in a row")

    async def _post(
        self, client: httpx.AsyncClient, claimed: Claimed, now: datetime
    ) -> tuple[int | None, str | None, str | None]:
        """(status code, error, failure kind); error None: delivered."""
        body = claimed.body.encode()
        headers = request_headers(
            event_id=claimed.event_id,
            event_type=claimed.event_type,
            delivery_id=claimed.id,
            attempt=claimed.attempt,
            keys=signing_keys(claimed, now),
            timestamp=int(now.timestamp()),
            body=body,
        )
        budget = self.settings.connect_timeout_seconds + self.settings.timeout_seconds
        try:
            async with asyncio.timeout(budget):
                target, address = await pinned(claimed.url, self.policy)
                url = httpx.URL(claimed.url)
                headers["Host"] = url.netloc.decode("ascii")
                request = client.build_request(
                    "POST",
                    url.copy_with(host=str(address)),
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": target.host},
                )
                response = await client.send(request, stream=True)
                try:
                    answer = await _head_of(response)
                finally:
                    await response.aclose()
        except TargetRefused as exc:
            return None, f"refused: {exc}", "refused"
        except (TimeoutError, httpx.TimeoutException):
            return None, f"timed out after {budget:g} s", "timeout"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500], "connection"
        if 200 <= response.status_code < 300:
            return response.status_code, None, None
        return response.status_code, f"HTTP {response.status_code}: {answer}"[:600], "status"

    async def _finish(self, claimed: Claimed, outcome: Outcome) -> bool:
        """Write the outcome, through any number of transient failures (a database that
        restarts); any other failure is logged and the lease runs out (attempted again)."""
        delay = 0.1
        while True:
            try:
                async with self.sessionmaker() as session, session.begin():
                    return await finish(
                        session,
                        claimed,
                        outcome,
                        pause_threshold=self.settings.pause_after_failed_deliveries,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    log.error("webhook_outcome_not_recorded", error=describe(exc, 500))
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.consumer_max_backoff_seconds)


async def _head_of(response: httpx.Response) -> str:
    """The first bytes of the answer (for the log), never the whole of a large one."""
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= ANSWER_BYTES:
            break
    return kept[:ANSWER_BYTES].decode("utf-8", "replace").strip()
