"""Token buckets in a shared Valkey/Redis, so that every gateway replica enforces one limit.

Kong's ``redis`` policy, as a token bucket: one Lua script per request refills the
caller's bucket by the time passed (the store's own clock, so replicas' clocks need not
agree) and takes a token, atomically; the bucket (a hash: tokens, time) expires once it
would be full again, as a full bucket holds no state.

When the store fails (refused, timeout, error) the request is decided by this process's
own buckets (``RateLimiter``), logged once per outage (``rate_limit_store_down`` and
``rate_limit_store_back``) and counted in ``gateway_ratelimit_fallback_total``; the store
is asked again after ``rate_limit_store_retry_seconds``, by one request at a time, so an
outage costs no request a timeout but the one that probes. During an outage each replica
allows the configured rate on its own (N replicas: up to N times it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
import valkey.asyncio as valkey
from prometheus_client import CollectorRegistry, Counter, Gauge
from valkey.exceptions import ValkeyError

from gateway.ratelimit import Decision, Limiter, RateLimiter, decide
from gateway.settings import GatewaySettings, RateLimitConfig

log = structlog.get_logger("gateway.ratelimit")

# KEYS[1] the bucket; ARGV rate (tokens/s), burst. Returns {allowed 0|1, tokens left}.
BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.17g', tokens)}
"""

_STORE_FAILURES = (ValkeyError, OSError, TimeoutError)


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.fallback = Counter(
            "gateway_ratelimit_fallback_total",
            "Requests whose rate limit was decided in process because the shared store failed",
            registry=registry,
        )
        self.up = Gauge(
            "gateway_ratelimit_store_up",
            "1 while the shared rate-limit store answers, 0 while the gateway falls back",
            registry=registry,
        )


class SharedRateLimiter:
    """Buckets in the store; ``fallback`` (per process) while the store is down."""

    def __init__(
        self,
        limits: dict[str, RateLimitConfig],
        client: valkey.Valkey,
        metrics: StoreMetrics,
        *,
        key_prefix: str,
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.client = client
        self.metrics = metrics
        self.key_prefix = key_prefix
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.fallback = RateLimiter(limits, clock)
        self.script = client.register_script(BUCKET_SCRIPT)
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.probing = False
        metrics.up.set(1)

    async def take(self, caller: str, scope: str) -> Decision | None:
        config = self.limits.get(scope)
        if config is None:
            return None
        if self.down_since is not None:
            if self.probing or self.clock() < self.retry_at:
                return self._local(caller, scope)
            self.probing = True  # this request asks the store; the others stay local
        try:
            allowed, tokens = await self.script(
                keys=[self.key_prefix + caller], args=[repr(config.rate), config.burst]
            )
        except _STORE_FAILURES as exc:
            self._failed(exc)
            return self._local(caller, scope)
        finally:
            self.probing = False
        if self.down_since is not None:
            self._recovered()
        return decide(config, float(tokens), bool(allowed))

    def _local(self, caller: str, scope: str) -> Decision | None:
        self.metrics.fallback.inc()
        return self.fallback.check(caller, scope)

    def _failed(self, exc: BaseException) -> None:
        now = self.clock()
        self.retry_at = now + self.retry_seconds
        if self.down_since is None:
            self.down_since = now
            self.metrics.up.set(0)
            log.warning(
                "rate_limit_store_down",
                error=type(exc).__name__,
                detail=str(exc)[:200],
                fallback="per-process buckets",
                retry_in_s=self.retry_seconds,
            )

    def _recovered(self) -> None:
        assert self.down_since is not None
        log.info("rate_limit_store_back", down_s=round(self.clock() - self.down_since, 3))
        self.down_since = None
        self.metrics.up.set(1)

    async def aclose(self) -> None:
        await self.client.aclose()


def build_limiter(settings: GatewaySettings, registry: CollectorRegistry) -> Limiter:
    """Per process unless ``rate_limit_store_url`` names a shared store."""
    limits = dict(settings.rate_limits)
    if not settings.rate_limit_store_url:
        return RateLimiter(limits)
    timeout = settings.rate_limit_store_timeout_seconds
    client = valkey.Valkey.from_url(
        settings.rate_limit_store_url,
        password=settings.rate_limit_store_password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        health_check_interval=30,
    )
    return SharedRateLimiter(
        limits,
        client,
        StoreMetrics(registry),
        key_prefix=settings.rate_limit_store_key_prefix,
        retry_seconds=settings.rate_limit_store_retry_seconds,
    )
