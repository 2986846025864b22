"""The replicas of one service: which one takes the next call, and which ones are out.

``GATEWAY_POINTS_URL`` (and the others) may list several base URLs, comma-separated. Each
call goes to the admitted replica with the fewest calls in flight (ties in turn, so an idle
service is served round robin).

A replica leaves the rotation when
- a connection to it is refused or times out (passive: it is surely not serving), or
- ``upstream_replica_failure_threshold`` calls in a row failed (timeout, 502/503/504, a
  broken connection), or
- its health check fails (active: ``GET <replica><upstream_health_path>`` every
  ``upstream_health_interval_seconds``, answered 200 within
  ``upstream_health_timeout_seconds``), found without any call having to fail first.

It comes back when a health check succeeds, or, with health checks off (interval 0),
``upstream_eject_seconds`` after it left. When no replica is admitted every one is tried
(as Envoy's panic mode): a wrong verdict must not turn into an outage. A single replica
is never taken out; the circuit breaker per service (``upstream.py``) covers it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

log = structlog.get_logger("gateway.replicas")


@dataclass(frozen=True, slots=True)
class Target:
    """Where the fast transport sends a replica's calls (plain ``http://`` only)."""

    host: str
    port: int
    prefix: bytes  # the base URL's path, if any


def target_of(base_url: str) -> Target | None:
    url = httpx.URL(base_url)
    if url.scheme != "http":
        return None
    return Target(url.host, url.port or 80, url.raw_path.rstrip(b"/"))


@dataclass(eq=False, slots=True)
class Replica:
    base_url: str
    target: Target | None
    outstanding: int = 0
    failures: int = 0  # consecutive
    out_until: float = 0.0  # out of the rotation until then (inf: until a health check passes)

    def admitted(self, now: float) -> bool:
        return self.out_until <= now


class ReplicaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "gateway_upstream_replica_up",
            "1 while a service replica is in the rotation, 0 while it is out",
            ["service", "replica"],
            registry=registry,
        )
        self.ejections = Counter(
            "gateway_upstream_ejections_total",
            "Replicas taken out of the rotation (refused, failures, health-check)",
            ["service", "reason"],
            registry=registry,
        )
        self.failovers = Counter(
            "gateway_upstream_failovers_total",
            "Calls sent to another replica after a connection to one could not be made",
            ["service"],
            registry=registry,
        )


@dataclass
class ReplicaPool:
    service: str
    replicas: list[Replica]
    metrics: ReplicaMetrics
    failure_threshold: int
    eject_seconds: float
    active_checks: bool
    clock: Callable[[], float] = time.monotonic
    turn: int = field(default=0)

    def __post_init__(self) -> None:
        for replica in self.replicas:
            self.metrics.up.labels(self.service, replica.base_url).set(1)

    @property
    def single(self) -> bool:
        return len(self.replicas) == 1

    def pick(self, tried: Sequence[Replica] = ()) -> Replica:
        """The next replica: admitted and not yet tried for this call, fewest calls in flight."""
        if self.single:
            return self.replicas[0]
        now = self.clock()
        admitted = [r for r in self.replicas if r.admitted(now)]
        candidates = [r for r in admitted if r not in tried] or admitted
        if not candidates:  # every replica is out: try them all rather than none
            candidates = [r for r in self.replicas if r not in tried] or self.replicas
        self.turn = (self.turn + 1) % len(candidates)
        ordered = candidates[self.turn :] + candidates[: self.turn]
        return min(ordered, key=lambda r: r.outstanding)

    def untried(self, tried: Sequence[Replica]) -> bool:
        """Another replica remains for a call that could not reach ``tried``: an admitted
        one, or any when none is admitted."""
        now = self.clock()
        admitted = [r for r in self.replicas if r.admitted(now)]
        return any(r not in tried for r in admitted or self.replicas)

    def succeeded(self, replica: Replica) -> None:
        replica.failures = 0

    def failed(self, replica: Replica, *, refused: bool = False) -> None:
        """A call failed; ``refused``: no connection could be made (out at once)."""
        replica.failures += 1
        if self.single or not replica.admitted(self.clock()):
            return
        if refused:
            self._eject(replica, "refused")
        elif replica.failures >= self.failure_threshold:
            self._eject(replica, "failures")

    def checked(self, replica: Replica, healthy: bool, why: str) -> None:
        """The outcome of one health check of ``replica``."""
        was_in = replica.admitted(self.clock())
        if healthy:
            replica.failures = 0
            replica.out_until = 0.0
            if not was_in:
                log.info("replica_readmitted", upstream=self.service, replica=replica.base_url)
                self.metrics.up.labels(self.service, replica.base_url).set(1)
            return
        if was_in:
            self._eject(replica, "health-check", why)
        replica.out_until = math.inf  # back only when a check passes

    def _eject(self, replica: Replica, reason: str, why: str = "") -> None:
        now = self.clock()
        replica.out_until = math.inf if self.active_checks else now + self.eject_seconds
        self.metrics.ejections.labels(self.service, reason).inc()
        self.metrics.up.labels(self.service, replica.base_url).set(0)
        log.warning(
            "replica_ejected",
            upstream=self.service,
            replica=replica.base_url,
            reason=reason,
            detail=why or None,
        )


async def check_health(
    pool: ReplicaPool, client: httpx.AsyncClient, path: str, timeout: float
) -> None:
    """One health check of each of the pool's replicas, in parallel."""

    async def one(replica: Replica) -> None:
        try:
            response = await client.get(replica.base_url + path, timeout=timeout)
        except (httpx.HTTPError, OSError) as exc:
            pool.checked(replica, False, type(exc).__name__)
            return
        pool.checked(replica, response.status_code == 200, f"HTTP {response.status_code}")

    await asyncio.gather(*(one(r) for r in pool.replicas))


async def health_loop(
    pools: Sequence[ReplicaPool],
    client: httpx.AsyncClient,
    *,
    path: str,
    interval: float,
    timeout: float,
) -> None:
    """Check every replica of the services that have several, until cancelled."""
    checked = [p for p in pools if not p.single]
    while checked:
        try:
            await asyncio.gather(*(check_health(p, client, path, timeout) for p in checked))
        except Exception as exc:  # a bug here must not end the checks for good
            log.error("health_checks_failed", error=repr(exc))
        await asyncio.sleep(interval)
