from pydantic import Field
from pydantic_settings import SettingsConfigDict

from loyalty_shared.nps import DEFAULT_MIN_SAMPLE
from loyalty_shared.settings import CommonSettings


class SegmentationSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="SEGMENTATION_", extra="ignore")

    service_name: str = "segmentation"
    port: int = 8002
    # The consumer folds a poll into two transactions at once (by partition number, so a
    # member's events stay in one, in order): one's SQL runs while the other's Python
    # does, on a second core; each of up to 1,000 events, as the live refresh costs a
    # planned statement per batch (bench/results/segmentation.md: 200 rule tags and 20
    # live segments, returning members, ~4,100/s with 1 x 500 per poll, ~5,500/s so)
    consumer_concurrency: int = Field(default=2, ge=1, le=16)
    consumer_batch_size: int = Field(default=1000, ge=1, le=10_000)

    # Lifecycle thresholds, relative to each member's median gap between orders
    # (docs/segmentation.md): days since last order / rhythm.
    lifecycle_default_gap_days: float = 30.0  # rhythm of members with a single order
    lifecycle_sleeping_ratio: float = 1.5
    lifecycle_churn_risk_ratio: float = 2.5
    lifecycle_churned_ratio: float = 4.0
    lifecycle_new_max_orders: int = 1
    lifecycle_mature_min_orders: int = 5
    # Churn-risk levels (1 - p_alive of the BG/NBD fit), published as
    # loyalty.profile.churn_risk_changed.v1 when a member's level changes at a recompute
    churn_risk_high: float = Field(default=0.7, gt=0, le=1)
    churn_risk_medium: float = Field(default=0.4, gt=0, le=1)

    # Daily recompute in the worker (UTC hour); 0..23
    recompute_hour_utc: int = 2
    # Recompute jobs: the runner refreshes a job's heartbeat every job_heartbeat_seconds;
    # a queued or running job whose heartbeat is older than job_stale_after_seconds
    # (its process died) is marked failed, so a new recompute can run.
    # how long an Idempotency-Key's stored answer is kept for replays (pruned daily)
    idempotency_retention_hours: float = 168.0
    job_heartbeat_seconds: float = 10.0
    job_stale_after_seconds: float = 120.0
    # Contact frequency cap defaults (editable at PUT /v1/contact-policy)
    contact_cap: int = 3
    contact_period_days: int = 7
    # KPIs: the NPS (and its 95% CI) is hidden below this many answers, as in feedback's
    # metrics (loyalty_shared.nps)
    nps_min_sample: int = Field(default=DEFAULT_MIN_SAMPLE, ge=1)
