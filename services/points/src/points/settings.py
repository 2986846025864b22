from decimal import Decimal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from loyalty_shared.settings import CommonSettings


class PointsSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="POINTS_", extra="ignore")

    service_name: str = "points"
    port: int = 8001
    # points per unit of paid amount, rounded down per order
    earn_rate: Decimal = Decimal("1")
    default_currency: str = "CNY"
    default_timezone: str = "Asia/Shanghai"

    # Ledger policy (docs/points-ledger.md)
    pending_days: int = Field(
        default=0,
        ge=0,
        le=365,
        description="Return window: purchase points stay pending this many days after the "
        "order's occurred_at before they can be spent (0 = available at once)",
    )
    expiry_months: int = Field(
        default=12,
        ge=0,
        le=240,
        description="Every lot expires this many months after it was earned (0 = never)",
    )
    expiring_soon_limit: int = Field(
        default=5, ge=1, le=50, description="How many upcoming expiry dates the status shows"
    )
    idempotency_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description="How long an Idempotency-Key's stored answer is kept for replays",
    )
    rules_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long each process keeps the tier ladder and running campaigns for the "
        "order path (0 = read them on every order); a change is visible everywhere within it",
    )
    order_facts_members: int = Field(
        default=50_000,
        ge=0,
        le=10_000_000,
        description="How many members' last checkout facts each process remembers so that "
        "their next checkout is one statement (0 = off). Always checked in Postgres; worth "
        "it when a member's checkouts usually reach the same process",
    )
    tier_evaluation_batch: int = Field(
        default=500, ge=1, description="Members handled per run of the tier evaluation job"
    )
    ledger_jobs_interval_seconds: float = Field(
        default=300.0, gt=0, description="How often the worker matures and expires lots"
    )

    # Trust at the edges (docs/security.md)
    client_time_window_hours: float = Field(
        default=48.0,
        gt=0,
        le=24 * 366,
        description="How old a client-given time (occurred_at) may be on the real-time routes "
        "(check-ins, interactions, POST /v1/orders, refunds); history goes through "
        "POST /v1/orders/batch",
    )
    client_time_skew_seconds: float = Field(
        default=300.0,
        ge=0,
        le=3600,
        description="How far a client-given time may be ahead of this service's clock, and "
        "before the member's enrolment (the two come from different clocks)",
    )
    interaction_attributes_max_bytes: int = Field(
        default=16 * 1024,
        ge=256,
        le=1024 * 1024,
        description="The largest `attributes` of POST /v1/interactions, serialized as JSON",
    )
    interactions_daily_limit: int = Field(
        default=200,
        ge=0,
        description="Interactions recorded per member per local day; more are answered "
        "without being recorded (reason capped_interactions_daily). 0 = no limit",
    )
    goodwill_monthly_cap: int = Field(
        default=1000,
        ge=0,
        description="Goodwill points (complaint SLA breaches) credited per member per local "
        "month; what is over it is not credited (reason capped_monthly). 0 = no cap",
    )
