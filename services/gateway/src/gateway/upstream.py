"""Calling a service: per-upstream timeout, retries for idempotent requests, a circuit breaker.

Timeout: ``upstream_timeouts[service]`` (else ``upstream_timeout_seconds``) bounds the
whole call, answered 504 ``upstream-timeout``.

Retry rule: a request is retried (``upstream_retries`` times) only when it is
idempotent, i.e. GET/HEAD/OPTIONS, or a write carrying an ``Idempotency-Key``
(the services replay the first answer for the same key), and only after a
transport failure (connection refused/reset, protocol error). Timeouts are never
retried: the service may still be working, and retrying a slow service adds load.

Replicas (``replicas.py``): a call goes to one of the service's replicas; a connection
that cannot be made sent nothing, so the call (any method) moves on to another replica at
once, without using the retry budget.

Breaker: ``breaker_failure_threshold`` consecutive failed calls to the service (transport
errors, timeouts, 502/503/504 answers, each after every replica it could try; not a 503
with Retry-After, the service's own "busy, retry" answer) open it;
while open, calls fail at once with 503 ``circuit-open``; after ``breaker_reset_seconds``
one trial call is let through (half-open): success closes it, failure opens it again. One
replica down is not a failure of the service: its calls reach another replica.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.fast_transport import FastTransport
from gateway.replicas import Replica, ReplicaMetrics, ReplicaPool, health_loop, target_of
from gateway.settings import GatewaySettings

log = structlog.get_logger("gateway.upstream")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_FAILURE_STATUSES = frozenset({502, 503, 504})


def _answered_busy(response: UpstreamResponse) -> bool:
    """A 503 with Retry-After from the service itself (its database restarting, a deadlock
    to retry): the service is up and answered at once; the caller gets the answer and its
    Retry-After. Counting it would open the breaker and turn a one-second database blip
    into ``breaker_reset_seconds`` of refusals for every caller."""
    return response.status_code == 503 and any(
        k.lower() == b"retry-after" for k, _ in response.headers
    )


def _raw(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


@dataclass(slots=True)
class UpstreamResponse:
    """A service's whole answer: status, headers as sent (raw bytes), body."""

    status_code: int
    headers: list[tuple[bytes, bytes]]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class UpstreamError(Exception):
    """No answer: ``kind`` is unavailable, timeout, circuit-open or bad-request (unsendable)."""

    def __init__(self, service: str, kind: str, retry_after: int = 5) -> None:
        super().__init__(f"{service}: {kind}")
        self.service = service
        self.kind = kind
        self.retry_after = retry_after


@dataclass
class CircuitBreaker:
    threshold: int
    reset_seconds: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.reset_seconds:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def retry_after(self) -> int:
        if self.opened_at is None:
            return 1
        return max(1, int(self.reset_seconds - (self.clock() - self.opened_at)) + 1)

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def record_failure(self) -> None:
        self.failures += 1
        if self.trial_in_flight or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self.trial_in_flight = False


class UpstreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Time spent waiting for a service",
            ["service"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.errors = Counter(
            "gateway_upstream_errors_total",
            "Calls to a service that failed (unavailable, timeout, circuit-open, 5xx)",
            ["service", "kind"],
            registry=registry,
        )
        self.retries = Counter(
            "gateway_upstream_retries_total",
            "Retried idempotent calls",
            ["service"],
            registry=registry,
        )
        self.replicas = ReplicaMetrics(registry)


class Upstreams:
    """One pooled transport (shared with the app's httpx client), one breaker per service,
    the service's replicas (``replicas.py``).

    Calls go to the transport directly: the httpx client layer (cookies, redirects, auth
    hooks) is of no use to a proxy and costs CPU on every request.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        transport: httpx.AsyncBaseTransport,
        metrics: UpstreamMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.metrics = metrics
        # every call proves it comes from the gateway (loyalty_shared.gateway_trust)
        self.token_header = (b"x-gateway-token", settings.upstream_token())
        # The fast transport takes raw bytes: no httpx Request/URL/Response per call.
        self.fast = transport if isinstance(transport, FastTransport) else None
        self.pools = {
            name: ReplicaPool(
                name,
                [Replica(url, target_of(url)) for url in urls],
                metrics.replicas,
                failure_threshold=settings.upstream_replica_failure_threshold,
                eject_seconds=settings.upstream_eject_seconds,
                active_checks=settings.upstream_health_interval_seconds > 0,
                clock=clock,
            )
            for name, urls in settings.upstream_replicas().items()
        }
        self.breakers = {
            name: CircuitBreaker(
                settings.breaker_failure_threshold, settings.breaker_reset_seconds, clock
            )
            for name in self.pools
        }
        # the latency histogram's child per service, made at its first call
        self._durations: dict[str, Histogram] = {}
        self._health: asyncio.Task[None] | None = None

    def base_url(self, service: str) -> str:
        """A replica of ``service`` in the rotation (for calls made outside ``request``)."""
        return self.pools[service].pick().base_url

    def start_health_checks(self, client: httpx.AsyncClient) -> None:
        interval = self.settings.upstream_health_interval_seconds
        if interval > 0 and any(not pool.single for pool in self.pools.values()):
            self._health = asyncio.create_task(
                health_loop(
                    list(self.pools.values()),
                    client,
                    path=self.settings.upstream_health_path,
                    interval=interval,
                    timeout=self.settings.upstream_health_timeout_seconds,
                )
            )

    async def stop_health_checks(self) -> None:
        if self._health is not None:
            self._health.cancel()
            await asyncio.gather(self._health, return_exceptions=True)
            self._health = None

    async def request(
        self,
        service: str,
        method: str,
        path_and_query: str,
        *,
        headers: Sequence[tuple[str | bytes, str | bytes]],
        content: bytes = b"",
        timeout_seconds: float | None = None,
        retry: bool | None = None,
    ) -> UpstreamResponse:
        """One call to ``service``; headers as text or bytes (``request_raw``: bytes only)."""
        raw = [(_raw(k), _raw(v)) for k, v in headers]
        return await self.request_raw(
            service,
            method,
            path_and_query,
            raw,
            content=content,
            timeout_seconds=timeout_seconds,
            retry=retry,
        )

    async def request_raw(
        self,
        service: str,
        method: str,
        path_and_query: str,
        headers: list[tuple[bytes, bytes]],
        *,
        content: bytes = b"",
        timeout_seconds: float | None = None,
        retry: bool | None = None,
    ) -> UpstreamResponse:
        """One call to ``service`` with the headers as raw bytes (the proxy's hot path)."""
        breaker = self.breakers[service]
        if not breaker.allow():
            self.metrics.errors.labels(service, "circuit-open").inc()
            raise UpstreamError(service, "circuit-open", breaker.retry_after())
        raw = [*headers, self.token_header]
        if retry is None:
            retry = method in IDEMPOTENT_METHODS or any(
                k.lower() == b"idempotency-key" for k, _ in raw
            )
        call = _Call(method, path_and_query, content, raw, self.settings.upstream_retries * retry)
        call.read_timeout = (
            timeout_seconds if timeout_seconds is not None else self.settings.timeout_for(service)
        )
        call.connect_timeout = min(
            self.settings.upstream_connect_timeout_seconds, call.read_timeout
        )
        start = time.perf_counter()
        try:
            response, replica = await self._call(service, call)
        except BaseException:
            # Cancelled (the client went away): a half-open trial must not block the breaker.
            breaker.trial_in_flight = False
            raise
        finally:
            self._duration(service).observe(time.perf_counter() - start)
        pool = self.pools[service]
        if response.status_code in _FAILURE_STATUSES and not _answered_busy(response):
            self.metrics.errors.labels(service, f"http-{response.status_code}").inc()
            pool.failed(replica)
            breaker.record_failure()
        else:
            if response.status_code >= 500:
                self.metrics.errors.labels(service, f"http-{response.status_code}").inc()
            pool.succeeded(replica)
            breaker.record_success()
        return response

    def _duration(self, service: str) -> Histogram:
        duration = self._durations.get(service)
        if duration is None:  # ``labels`` looks the child up under a lock: once per service
            duration = self._durations[service] = self.metrics.duration.labels(service)
        return duration

    async def _call(self, service: str, call: _Call) -> tuple[UpstreamResponse, Replica]:
        """Replicas in turn until one answers. A connection that could not be made sent
        nothing, so any call moves on to another replica; other transport failures are
        retried (on another replica where there is one) only within the call's budget."""
        pool = self.pools[service]
        while True:
            replica = pool.pick(call.tried)
            call.tried.append(replica)
            replica.outstanding += 1
            try:
                # httpx's read timeout is per read; the deadline bounds the whole call.
                async with asyncio.timeout(call.read_timeout):
                    return await self._send(service, replica, call), replica
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                pool.failed(replica, refused=True)
                if pool.untried(call.tried):
                    self.metrics.replicas.failovers.labels(service).inc()
                    continue
                if isinstance(exc, httpx.ConnectTimeout):  # as any timeout: not retried
                    self._failed(service, "timeout", exc)
                    raise UpstreamError(service, "timeout") from exc
                self._give_up_or_retry(service, call, "unavailable", exc)
            except (httpx.TimeoutException, TimeoutError) as exc:
                pool.failed(replica)
                self._failed(service, "timeout", exc)
                raise UpstreamError(service, "timeout") from exc
            except (httpx.InvalidURL, httpx.LocalProtocolError) as exc:
                # The request cannot be sent as the client wrote it: not the service's fault.
                raise UpstreamError(service, "bad-request") from exc
            except _RETRYABLE as exc:
                pool.failed(replica)
                self._give_up_or_retry(service, call, "unavailable", exc)
            except httpx.HTTPError as exc:
                pool.failed(replica)
                self._failed(service, "unavailable", exc)
                raise UpstreamError(service, "unavailable") from exc
            finally:
                replica.outstanding -= 1

    def _give_up_or_retry(self, service: str, call: _Call, kind: str, exc: Exception) -> None:
        """Returns when the call may be tried again; raises ``UpstreamError`` otherwise."""
        if call.retries_left > 0:
            call.retries_left -= 1
            self.metrics.retries.labels(service).inc()
            return
        self._failed(service, kind, exc)
        raise UpstreamError(service, kind) from exc

    async def _send(self, service: str, replica: Replica, call: _Call) -> UpstreamResponse:
        target = replica.target
        if self.fast is not None and target is not None:
            try:
                # the path and query as the client sent them (raw bytes, read as latin-1)
                request_target = target.prefix + call.path_and_query.encode("latin-1")
            except UnicodeEncodeError as exc:
                raise httpx.InvalidURL("the path is not in the request's encoding") from exc
            raw = await self.fast.send_raw(
                call.method,
                target.host,
                target.port,
                request_target,
                call.headers,
                call.content,
                connect_timeout=call.connect_timeout,
            )
            return UpstreamResponse(raw.status_code, raw.headers, raw.content)
        timeout = httpx.Timeout(call.read_timeout, connect=call.connect_timeout)
        request = httpx.Request(
            call.method,
            replica.base_url + call.path_and_query,
            content=call.content,
            headers=call.headers,
            extensions={"timeout": timeout.as_dict()},
        )
        response = await self.transport.handle_async_request(request)
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return UpstreamResponse(response.status_code, list(response.headers.raw), body)

    def _failed(self, service: str, kind: str, exc: Exception) -> None:
        log.warning("upstream_failed", upstream=service, kind=kind, error=type(exc).__name__)
        self.metrics.errors.labels(service, kind).inc()
        self.breakers[service].record_failure()


@dataclass(slots=True)
class _Call:
    """One call as it is sent (to one replica, then maybe another)."""

    method: str
    path_and_query: str
    content: bytes
    headers: list[tuple[bytes, bytes]]
    retries_left: int
    read_timeout: float = 0.0
    connect_timeout: float = 0.0
    tried: list[Replica] = field(default_factory=list)
