"""Token buckets per caller (API key name or member), configured per scope, in process.

Each replica keeps its own buckets, so with N replicas behind a load balancer a
caller gets up to N times the configured rate; divide the configured rate by the
replica count (docs/gateway.md), or move the buckets to a shared store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

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
        window = max(1, math.ceil(config.burst / config.rate))
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Decision(
                allowed=True,
                limit=config.burst,
                remaining=int(bucket.tokens),
                reset_seconds=math.ceil((config.burst - bucket.tokens) / config.rate),
                retry_after_seconds=0,
                window_seconds=window,
            )
        wait = max(1, math.ceil((1.0 - bucket.tokens) / config.rate))
        return Decision(
            allowed=False,
            limit=config.burst,
            remaining=0,
            reset_seconds=math.ceil((config.burst - bucket.tokens) / config.rate),
            retry_after_seconds=wait,
            window_seconds=window,
        )

    def _prune(self, now: float) -> None:
        """Forget the buckets that have been idle longest (a full bucket holds no state)."""
        by_age = sorted(self.buckets.items(), key=lambda kv: kv[1].updated)
        for caller, _ in by_age[: len(by_age) // 2]:
            del self.buckets[caller]
