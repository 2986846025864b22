"""Token buckets per caller (API key name or member), configured per scope, in process.

Each replica keeps its own buckets here, so with N replicas behind a load balancer a
caller gets up to N times the configured rate. ``GATEWAY_RATE_LIMIT_STORE_URL`` moves the
buckets to a shared Valkey/Redis (``ratelimit_store.py``), with these per-process buckets
as the fallback while the store is down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.settings import RateLimitConfig


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after_seconds: int  # until one request is allowed (0 when allowed)
    window_seconds: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": f"{self.limit};w={self.window_seconds}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


class Limiter(Protocol):
    """What the guard asks: take one token from the caller's bucket (None: not limited)."""

    async def take(self, caller: str, scope: str) -> Decision | None: ...

    async def aclose(self) -> None: ...


def decide(config: RateLimitConfig, tokens: float, allowed: bool) -> Decision:
    """The answer for a bucket holding ``tokens`` after the request took one (if ``allowed``)."""
    window = max(1, math.ceil(config.burst / config.rate))
    reset = math.ceil((config.burst - tokens) / config.rate)
    if allowed:
        return Decision(True, config.burst, int(tokens), reset, 0, window)
    wait = max(1, math.ceil((1.0 - tokens) / config.rate))
    return Decision(False, config.burst, 0, reset, wait, window)


class RateLimiter:
    MAX_BUCKETS = 100_000

    def __init__(
        self,
        limits: dict[str, RateLimitConfig],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}

    def check(self, caller: str, scope: str) -> Decision | None:
        """Take one token from the caller's bucket; None when the scope has no limit."""
        config = self.limits.get(scope)
        if config is None:
            return None
        now = self.clock()
        bucket = self.buckets.get(caller)
        if bucket is None:
            if len(self.buckets) >= self.MAX_BUCKETS:
                self._prune(now)
            bucket = self.buckets[caller] = Bucket(tokens=float(config.burst), updated=now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(config.burst), bucket.tokens + elapsed * config.rate)
            bucket.updated = now
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
        return decide(config, bucket.tokens, allowed)

    async def take(self, caller: str, scope: str) -> Decision | None:
        return self.check(caller, scope)

    async def aclose(self) -> None:
        """Nothing to release: the buckets live in this process."""

    def _prune(self, now: float) -> None:
        """Forget the buckets that have been idle longest (a full bucket holds no state)."""
        by_age = sorted(self.buckets.items(), key=lambda kv: kv[1].updated)
        for caller, _ in by_age[: len(by_age) // 2]:
            del self.buckets[caller]
