"""Settings base: each service subclasses it with its own ``env_prefix``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "test", "production"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# the hot path's speed layers that can be switched off, to measure what each buys
# (bench/orders.py; docs/performance.md, "What each layer buys")
HotpathLayer = Literal["fast_lane", "keyed_batches", "driver_autocommit"]

DEV_ERASURE_KEY = "dev-erasure-key-not-secret"
# The documented dev/test credential between the gateway and the services (like the dev
# API keys): never accepted outside dev and test.
DEV_GATEWAY_SECRET = "dev-gateway-secret-change-me-outside-dev"  # noqa: S105
GATEWAY_SECRET_MIN_LENGTH = 32


class CommonSettings(BaseSettings):
    """What every service reads. A subclass sets ``env_prefix`` (``POINTS_`` ...)."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_", extra="ignore")

    # "production" is the default on purpose: dev conveniences (default keys,
    # secrets) only exist when someone asks for them.
    environment: Environment = "production"
    service_name: str = "loyalty"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of this service's own database (postgresql+asyncpg://...)",
    )
    # A fixed-size pool: under load, requests wait for a connection (up to
    # db_pool_timeout_seconds, then 503) instead of opening and closing extra
    # connections. Overflow connections are closed as soon as they are returned, so
    # a steady load above pool_size used to start a Postgres backend (fork, catalog
    # caches, statement preparation) every few requests: measured on the checkout
    # path, that was 40% of Postgres's CPU. Size the pool to what the database can
    # run at once, not to the number of concurrent HTTP requests.
    db_pool_size: int = Field(default=16, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    hotpath_off: frozenset[HotpathLayer] = Field(
        default=frozenset(),
        description="Speed layers switched off (JSON list), to measure what each buys: "
        "fast_lane, keyed_batches, driver_autocommit",
    )

    # uvicorn worker processes for `api` (each has its own pool: the database sees
    # api_workers x db_pool_size connections from one replica).
    api_workers: int = Field(default=1, ge=1)

    kafka_bootstrap: str = "127.0.0.1:9092"
    # The embedded dev broker (Tansu) lacks InitProducerId, so the dev stack
    # turns this off; real Kafka keeps it on.
    kafka_idempotent_producer: bool = True
    kafka_topic_partitions: int = 6
    kafka_replication_factor: int = 1
    kafka_request_timeout_ms: int = 10_000
    # The largest record the producer sends (aiokafka's max_request_size). Keep it at or
    # below the broker's message.max.bytes (Apache Kafka's default: 1,048,588); a row
    # above it is parked by the relay instead of blocking the outbox.
    kafka_max_message_bytes: int = Field(default=1_000_000, ge=1024)
    # How every producer, consumer and admin client connects (loyalty_shared.kafka.
    # connection_options): SASL_SSL with SCRAM in production, PLAINTEXT for the dev broker.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = Field(default="", repr=False)
    kafka_ssl_cafile: str = Field(
        default="",
        description="PEM file of the CA(s) that signed the brokers' certificates (SSL, "
        "SASL_SSL); empty: the system's CAs",
    )

    outbox_batch_size: int = 500
    outbox_poll_seconds: float = 1.0
    outbox_linger_seconds: float = 0.005
    outbox_retention_hours: float = 168.0
    outbox_broker_check_seconds: float = 5.0

    consumer_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Tries of one event that fails for its own content before it is "
        "dead-lettered (transient failures are retried without end and never count)",
    )
    consumer_retry_backoff_seconds: float = 0.2
    consumer_max_backoff_seconds: float = Field(default=5.0, gt=0)
    consumer_batch_size: int = Field(default=500, ge=1, le=10_000)
    consumer_concurrency: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Transactions a consumer runs at once over one poll's records, each "
        "for whole partition numbers (so one member's events of a topic stay in one, in "
        "order; of several topics only if their partition counts match); more than 1 only "
        "for a consumer class declared lane_safe",
    )

    # The worker's Prometheus metrics (outbox, consumers, jobs) on this port; 0: not served.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    pipeline_monitor_seconds: float = Field(default=5.0, gt=0)

    # Erasure tombstones are HMAC-SHA256(this secret, member_id) (loyalty_shared.erasure).
    # Required outside dev and test; keep it stable (a new secret forgets every tombstone).
    erasure_hmac_secret: str = Field(default="", repr=False)

    # The credential the gateway sends in X-Gateway-Token (loyalty_shared.gateway_trust): a
    # service answers 401 to any other caller. Required outside dev and test; the previous
    # one is accepted as well while a new one is rolled out.
    gateway_secret: str = Field(default="", repr=False)
    gateway_secret_previous: str = Field(default="", repr=False)

    def gateway_secrets(self) -> tuple[bytes, ...]:
        """The X-Gateway-Token values this service accepts (the dev secret in dev and test)."""
        dev = self.environment in ("dev", "test")
        prefix = self.model_config.get("env_prefix", "")
        if not self.gateway_secret:
            if dev:
                return (DEV_GATEWAY_SECRET.encode(),)
            raise RuntimeError(
                f"{prefix}GATEWAY_SECRET is not set: outside dev and test a service answers "
                "only the gateway, which proves itself with this shared secret (a random "
                f"string of {GATEWAY_SECRET_MIN_LENGTH}+ characters, the gateway's "
                "GATEWAY_UPSTREAM_SECRET)"
            )
        accepted = tuple(s for s in (self.gateway_secret, self.gateway_secret_previous) if s)
        if not dev and any(len(s) < GATEWAY_SECRET_MIN_LENGTH for s in accepted):
            raise RuntimeError(
                f"{prefix}GATEWAY_SECRET (and {prefix}GATEWAY_SECRET_PREVIOUS) need "
                f"{GATEWAY_SECRET_MIN_LENGTH}+ characters outside dev and test"
            )
        return tuple(s.encode() for s in accepted)

    @model_validator(mode="after")
    def _kafka_credentials(self) -> CommonSettings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            prefix = self.model_config.get("env_prefix", "")
            raise ValueError(
                f"{prefix}KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                f"{prefix}KAFKA_SASL_USERNAME and {prefix}KAFKA_SASL_PASSWORD"
            )
        return self

    def erasure_key(self) -> str:
        """The tombstones' HMAC key: the setting, or the dev key in dev and test."""
        if self.erasure_hmac_secret:
            return self.erasure_hmac_secret
        if self.environment in ("dev", "test"):
            return DEV_ERASURE_KEY
        prefix = self.model_config.get("env_prefix", "")
        raise RuntimeError(
            f"{prefix}ERASURE_HMAC_SECRET is not set: erasure tombstones need a secret key "
            "outside dev and test (a long random string, the same for every replica of the "
            "service, kept for as long as its data)"
        )

    def sqlalchemy_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                f"{self.model_config.get('env_prefix', '')}DATABASE_URL is not set: "
                "point it at this service's own Postgres database"
            )
        url = self.database_url
        if url.startswith("postgresql://"):
            url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
        return url
