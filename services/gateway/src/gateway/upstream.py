"""Calling a service: per-upstream timeout, retries for idempotent requests, a circuit breaker.

Timeout: ``upstream_timeouts[service]`` (else ``upstream_timeout_seconds``) bounds the
whole call, answered 504 ``upstream-timeout``.

Retry rule: a request is retried (``upstream_retries`` times) only when it is
idempotent, i.e. GET/HEAD/OPTIONS, or a write carrying an ``Idempotency-Key``
(the services replay the first answer for the same key), and only after a
transport failure (connection refused/reset, protocol error). Timeouts are never
retried: the service may still be working, and retrying a slow service adds load.

Breaker: ``breaker_failure_threshold`` consecutive failures (transport errors,
timeouts, 502/503/504 answers) open it; while open, calls fail at once with 503
``circuit-open``; after ``breaker_reset_seconds`` one trial call is let through
(half-open): success closes it, failure opens it again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.fast_transport import FastTransport
from gateway.settings import GatewaySettings

log = structlog.get_logger("gateway.upstream")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_FAILURE_STATUSES = frozenset({502, 503, 504})


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


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    prefix: bytes  # the base URL's path, if any


def _target(base_url: str) -> _Target | None:
    """Where the fast transport sends a service's calls; None unless plain ``http://``."""
    url = httpx.URL(base_url)
    if url.scheme != "http":
        return None
    return _Target(url.host, url.port or 80, url.raw_path.rstrip(b"/"))


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


class Upstreams:
    """One pooled transport (shared with the app's httpx client), one breaker per service.

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
        self.base_urls = settings.upstreams()
        # every call proves it comes from the gateway (loyalty_shared.gateway_trust)
        self.token_header = (b"x-gateway-token", settings.upstream_token())
        # The fast transport takes raw bytes: no httpx Request/URL/Response per call.
        self.fast = transport if isinstance(transport, FastTransport) else None
        self.targets = {name: _target(url) for name, url in self.base_urls.items()}
        self.breakers = {
            name: CircuitBreaker(
                settings.breaker_failure_threshold, settings.breaker_reset_seconds, clock
            )
            for name in self.base_urls
        }

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
        breaker = self.breakers[service]
        if not breaker.allow():
            self.metrics.errors.labels(service, "circuit-open").inc()
            raise UpstreamError(service, "circuit-open", breaker.retry_after())
        raw = [(_raw(k), _raw(v)) for k, v in headers]
        raw.append(self.token_header)
        if retry is None:
            retry = method in IDEMPOTENT_METHODS or any(
                k.lower() == b"idempotency-key" for k, _ in raw
            )
        attempts = 1 + (self.settings.upstream_retries if retry else 0)
        read_timeout = (
            timeout_seconds if timeout_seconds is not None else self.settings.timeout_for(service)
        )
        connect_timeout = min(self.settings.upstream_connect_timeout_seconds, read_timeout)
        start = time.perf_counter()
        try:
            for attempt in range(attempts):
                try:
                    # httpx's read timeout is per read; the deadline bounds the whole call.
                    async with asyncio.timeout(read_timeout):
                        response = await self._send(
                            service,
                            method,
                            path_and_query,
                            content,
                            raw,
                            read_timeout,
                            connect_timeout,
                        )
                    break
                except (httpx.TimeoutException, TimeoutError) as exc:
                    self._failed(service, "timeout", exc)
                    raise UpstreamError(service, "timeout") from exc
                except (httpx.InvalidURL, httpx.LocalProtocolError) as exc:
                    # The request cannot be sent as the client wrote it: not the service's fault.
                    raise UpstreamError(service, "bad-request") from exc
                except _RETRYABLE as exc:
                    if attempt + 1 < attempts:
                        self.metrics.retries.labels(service).inc()
                        continue
                    self._failed(service, "unavailable", exc)
                    raise UpstreamError(service, "unavailable") from exc
                except httpx.HTTPError as exc:
                    self._failed(service, "unavailable", exc)
                    raise UpstreamError(service, "unavailable") from exc
        except BaseException:
            # Cancelled (the client went away): a half-open trial must not block the breaker.
            breaker.trial_in_flight = False
            raise
        finally:
            self.metrics.duration.labels(service).observe(time.perf_counter() - start)
        if response.status_code in _FAILURE_STATUSES:
            self.metrics.errors.labels(service, f"http-{response.status_code}").inc()
            breaker.record_failure()
        else:
            if response.status_code >= 500:
                self.metrics.errors.labels(service, f"http-{response.status_code}").inc()
            breaker.record_success()
        return response

    async def _send(
        self,
        service: str,
        method: str,
        path_and_query: str,
        content: bytes,
        headers: list[tuple[bytes, bytes]],
        read_timeout: float,
        connect_timeout: float,
    ) -> UpstreamResponse:
        target = self.targets[service]
        if self.fast is not None and target is not None:
            try:
                # the path and query as the client sent them (raw bytes, read as latin-1)
                request_target = target.prefix + path_and_query.encode("latin-1")
            except UnicodeEncodeError as exc:
                raise httpx.InvalidURL("the path is not in the request's encoding") from exc
            raw = await self.fast.send_raw(
                method,
                target.host,
                target.port,
                request_target,
                headers,
                content,
                connect_timeout=connect_timeout,
            )
            return UpstreamResponse(raw.status_code, raw.headers, raw.content)
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        request = httpx.Request(
            method,
            self.base_urls[service] + path_and_query,
            content=content,
            headers=headers,
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
