"""The gateway's configuration (environment variables prefixed ``GATEWAY_``).

Lists and maps are JSON, e.g.
``GATEWAY_API_KEYS='[{"name": "shop-eu", "scope": "storefront", "sha256": "..."}]'``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import SettingsConfigDict

from loyalty_shared.settings import DEV_GATEWAY_SECRET, GATEWAY_SECRET_MIN_LENGTH, CommonSettings

Scope = Literal["storefront", "ops", "admin"]
CallerScope = Literal["storefront", "ops", "admin", "member"]


class ApiKeyConfig(BaseModel):
    """One configured API key: only the SHA-256 of the key is stored, never the key."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@\-]+$")
    scope: Scope
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class RateLimitConfig(BaseModel):
    """A token bucket: ``rate`` requests per second on average, bursts up to ``burst``."""

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)


def _default_rate_limits() -> dict[str, RateLimitConfig]:
    return {
        "storefront": RateLimitConfig(rate=500, burst=1000),
        "ops": RateLimitConfig(rate=50, burst=100),
        "admin": RateLimitConfig(rate=50, burst=100),
        "member": RateLimitConfig(rate=5, burst=20),
    }


def _split_urls(value: str) -> tuple[str, ...]:
    return tuple(u.strip().rstrip("/") for u in value.split(",") if u.strip())


class GatewaySettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    port: int = 8000
    # a service's base URL, or several (its replicas) comma-separated: replicas.py
    points_url: str = "http://127.0.0.1:8001"
    segmentation_url: str = "http://127.0.0.1:8002"
    feedback_url: str = "http://127.0.0.1:8003"
    webhooks_url: str = "http://127.0.0.1:8004"
    upstream_health_interval_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Health check of each replica of a service with several; 0: none (a "
        "replica taken out comes back after upstream_eject_seconds)",
    )
    upstream_health_timeout_seconds: float = Field(default=1.0, gt=0)
    upstream_health_path: str = Field(default="/health", pattern=r"^/")
    upstream_replica_failure_threshold: int = Field(
        default=3, ge=1, description="Failed calls in a row that take a replica out"
    )
    upstream_eject_seconds: float = Field(default=10.0, gt=0)

    # -- upstream calls ------------------------------------------------------------
    upstream_timeout_seconds: float = 10.0
    upstream_connect_timeout_seconds: float = 2.0
    upstream_timeouts: dict[str, float] = Field(
        default_factory=dict,
        description="Per-service read timeout overriding upstream_timeout_seconds, "
        'e.g. {"segmentation": 30}',
    )
    upstream_route_timeouts: dict[str, float] = Field(
        default_factory=lambda: {"POST /v1/orders/batch": 60.0},
        description="Read timeout of single routes ('METHOD /template' as the policy names "
        "them), overriding the service's: the history import's batch of up to 1,000 orders "
        "(docs/gateway.md, Timeouts)",
    )
    upstream_max_connections: int = 200
    upstream_transport: Literal["fast", "httpx"] = Field(
        default="fast",
        description="fast: the gateway's lean HTTP/1.1 pool; httpx: httpcore's (HTTP/1.1, TLS)",
    )
    upstream_retries: int = Field(
        default=1, ge=0, le=3, description="Extra attempts for idempotent requests"
    )
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=10.0, gt=0)
    openapi_cache_seconds: float = 30.0
    status_part_timeout_seconds: float = Field(
        default=2.0, gt=0, description="Budget of each part of GET /v1/members/{id}/status"
    )

    upstream_secret: str = Field(
        default="",
        repr=False,
        description="Sent to the services in X-Gateway-Token (their <SERVICE>_GATEWAY_SECRET); "
        "required outside dev and test",
    )

    # -- clients ---------------------------------------------------------------------
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    cors_allow_origins: list[str] = Field(default_factory=list)
    hsts_seconds: int = Field(
        default=0, ge=0, description="Strict-Transport-Security max-age; 0 = header off"
    )

    # -- authentication ------------------------------------------------------------
    api_keys: list[ApiKeyConfig] = Field(
        default_factory=list,
        description="API keys (hashed). Empty: the documented dev keys in dev/test, "
        "a start-up failure elsewhere.",
    )
    member_token_algorithm: Literal["HS256", "RS256"] = "HS256"  # noqa: S105
    member_token_secret: str = Field(default="", description="HS256 signing secret")
    member_token_private_key: str = Field(default="", description="RS256: PEM private key")
    member_token_public_key: str = Field(default="", description="RS256: PEM public key")
    member_token_issuer: str = "loyalty-gateway"  # noqa: S105
    member_token_audience: str = "loyalty-api"  # noqa: S105
    member_token_default_ttl_seconds: int = Field(default=900, ge=60)
    member_token_max_ttl_seconds: int = Field(default=86_400, ge=60)

    # -- the ops console (/console) ----------------------------------------------------
    console_secret: str = Field(
        default="",
        repr=False,
        description="Seals the console's session cookie (32+ characters); empty outside dev "
        "and test: the console is off (404)",
    )
    console_session_seconds: int = Field(
        default=8 * 3600, ge=60, description="A console sign-in lasts this long"
    )
    console_cookie_secure: bool | None = Field(
        default=None,
        description="The session cookie's Secure flag; unset: on outside dev and test",
    )

    rate_limits: dict[str, RateLimitConfig] = Field(default_factory=_default_rate_limits)
    # -- rate limits shared by every replica (ratelimit_store.py) ----------------------
    rate_limit_store_url: str = Field(
        default="",
        description="Valkey/Redis URL holding the buckets of every replica "
        "(redis://valkey:6379/0, rediss:// for TLS); empty: each process keeps its own",
    )
    rate_limit_store_password: str = Field(default="", repr=False)
    rate_limit_store_timeout_seconds: float = Field(
        default=0.2, gt=0, description="Connect and answer timeout of one store call"
    )
    rate_limit_store_retry_seconds: float = Field(
        default=2.0,
        ge=0,
        description="After a failed store call, decide in process this long before asking again",
    )
    rate_limit_store_key_prefix: str = "loyalty:ratelimit:"

    @field_validator("points_url", "segmentation_url", "feedback_url", "webhooks_url")
    @classmethod
    def _base_urls(cls, value: str) -> str:
        urls = _split_urls(value)
        if not urls:
            raise ValueError("at least one base URL")
        for url in urls:
            if not url.startswith(("http://", "https://")) or len(url.split("//", 1)[1]) == 0:
                raise ValueError(f"{url!r} is not an http:// or https:// base URL")
        if len(set(urls)) != len(urls):
            raise ValueError("a replica is listed twice")
        return value

    def upstream_replicas(self) -> dict[str, tuple[str, ...]]:
        """Each service's replicas' base URLs (one, or several comma-separated)."""
        return {
            "points": _split_urls(self.points_url),
            "segmentation": _split_urls(self.segmentation_url),
            "feedback": _split_urls(self.feedback_url),
            "webhooks": _split_urls(self.webhooks_url),
        }

    def upstreams(self) -> dict[str, str]:
        """One base URL per service: the first replica's."""
        return {name: urls[0] for name, urls in self.upstream_replicas().items()}

    def upstream_token(self) -> bytes:
        """What the gateway proves itself with to the services (the dev secret in dev/test).

        Raises ``RuntimeError`` outside dev and test without a long enough secret.
        """
        if not self.upstream_secret and self.is_dev:
            return DEV_GATEWAY_SECRET.encode()
        if len(self.upstream_secret) < GATEWAY_SECRET_MIN_LENGTH and not self.is_dev:
            raise RuntimeError(
                "GATEWAY_UPSTREAM_SECRET is not set (or shorter than "
                f"{GATEWAY_SECRET_MIN_LENGTH} characters): the services answer only calls "
                "carrying it (their <SERVICE>_GATEWAY_SECRET holds the same value)"
            )
        return self.upstream_secret.encode()

    def timeout_for(self, service: str) -> float:
        return self.upstream_timeouts.get(service, self.upstream_timeout_seconds)

    def route_timeout(self, method: str, template: str) -> float | None:
        """The route's own read timeout, if it has one (else the service's)."""
        return self.upstream_route_timeouts.get(f"{method} {template}")

    @property
    def is_dev(self) -> bool:
        return self.environment in ("dev", "test")
