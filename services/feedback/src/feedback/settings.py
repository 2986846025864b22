from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from loyalty_shared.nps import DEFAULT_MIN_SAMPLE
from loyalty_shared.settings import CommonSettings


class FeedbackSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="FEEDBACK_", extra="ignore")

    service_name: str = "feedback"
    port: int = 8003
    # how long an Idempotency-Key's stored answer is kept for replays (pruned hourly)
    idempotency_retention_hours: float = Field(default=168.0, gt=0)
    # used only when no SLA policy sets a clock (the policies table is the real source)
    first_response_hours: float = 24.0
    resolution_hours: float = 48.0
    # Trust at the edges (docs/security.md)
    complaints_daily_limit: int = Field(
        default=5,
        ge=0,
        description="Complaints a member (or a storefront for them) may open in 24 hours; "
        "more are refused (429 complaint-limit-reached). Ops are not held by it. 0 = no limit",
    )
    default_severity: Literal["low", "medium", "high", "critical"] = Field(
        default="medium",
        description="The severity (and so the SLA) of a complaint until ops set one; what a "
        "member or storefront sends is kept as reported_severity",
    )
    reopen_window_hours: float = Field(
        default=168.0, description="a resolved/closed complaint can be reopened this long after"
    )
    breach_check_seconds: float = 30.0
    follow_up_after_resolution_days: float = 3.0
    follow_up_after_detractor_days: float = 3.0
    churn_follow_up_days: float = 3.0
    # members whose monthly follow-up is scheduled: value tier "high" or one of these tiers
    high_value_tiers: list[str] = Field(default_factory=lambda: ["diamond"])
    # ids or names of segments (ops' own) whose entry means churn risk (case-insensitive);
    # the lifecycle stage churn-risk and the churn-risk level high always do
    churn_risk_segments: list[str] = Field(
        default_factory=lambda: ["churn-risk", "churn_risk", "at-risk", "at_risk"]
    )
    nps_min_sample: int = DEFAULT_MIN_SAMPLE  # NPS hidden below this many answers
    csat_target: float = 4.5
    nps_target: float = 60.0
    fcr_target: float = 0.85
    follow_up_coverage_target: float = 1.0
    rectification_target: float = 0.95
