from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field


class RecomputeIn(BaseModel):
    as_of: AwareDatetime | None = Field(
        default=None, description="Compute every score as of this instant (default now)"
    )


class JobAccepted(BaseModel):
    job_id: str
    status: str
    as_of: datetime


class JobOut(BaseModel):
    job_id: str
    kind: str
    status: str = Field(description="queued / running / succeeded / failed")
    progress: float = Field(ge=0, le=1)
    step: str | None
    as_of: datetime
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None = Field(
        description="Refreshed while queued or running; stale after "
        "SEGMENTATION_JOB_STALE_AFTER_SECONDS means the process died (the job is then failed)"
    )


class BGNBDOut(BaseModel):
    r: float
    alpha: float
    a: float
    b: float
    time_unit: str = "day"


class GammaGammaOut(BaseModel):
    p: float
    q: float
    v: float


class ClvModelOut(BaseModel):
    bgnbd: BGNBDOut | None
    gamma_gamma: GammaGammaOut | None
    customers: int
    repeat_customers: int
    fitted_at: datetime
    as_of: datetime
    note: str | None
    horizon_days: int


class LoyaltyWeightsIn(BaseModel):
    matrix: list[list[float]] = Field(
        description="7x7 pairwise comparison matrix (Saaty 1-9, reciprocal) over the indicators"
    )


class LoyaltyWeightsOut(BaseModel):
    indicators: list[str]
    matrix: list[list[float]]
    weights: dict[str, float]
    lambda_max: float
    ci: float
    cr: float


class KpiTarget(BaseModel):
    op: str = Field(description="how the current figure compares with value: >=, <= or >")
    value: float | str | None = Field(
        description="The target for the current period (decimal string for money); null when "
        "it is relative and the previous period has no figure"
    )
    stretch: float | str | None = Field(description="The stretch target, if the brief sets one")
    relative_to_previous: list[float] | None = Field(
        description="[min, stretch] growth on the previous period (0.2 = +20%) for the "
        "targets the brief sets as growth; the previous period is the baseline"
    )
    basis: str = Field(description="The target as the brief states it")
    met: bool | None = Field(description="current against value; null when either is missing")


class KpiFigure(BaseModel):
    current: Any
    previous: Any
    target: KpiTarget | None = Field(
        default=None, description="The brief's target for this KPI (null when it sets none)"
    )


class KpiGroup(BaseModel):
    key: str = Field(description="tier name, value tier, or segment id")
    label: str = Field(description="tier name, value tier, or segment name")
    kpis: dict[str, KpiFigure] = Field(
        description="The same figures as the top level (without tier_distribution and "
        "segment_sizes) over the group's members; null when the group is empty in a period"
    )


class RfmCell(BaseModel):
    r: int = Field(description="recency score, 1-5")
    f: int = Field(description="frequency score, 1-5")
    count: int


class DistributionOut(BaseModel):
    """How every profile spreads (not a sample): the console's value tier, lifecycle and
    RFM charts."""

    profiles: int = Field(description="every profile")
    value_tiers: dict[str, int] = Field(description="per value tier; `unscored` before a recompute")
    lifecycle: dict[str, int] = Field(description="per lifecycle stage; `unknown` if not scored")
    tiers: dict[str, int] = Field(description="per loyalty tier; `none` if not known yet")
    rfm_grid: list[RfmCell] = Field(
        description="scored profiles per R x F cell (empty cells left out)"
    )
    rfm_scored: int = Field(description="profiles with an R and an F score")


class KpisOut(BaseModel):
    period: dict[str, datetime]
    previous_period: dict[str, datetime]
    definitions: dict[str, str]
    breakdown_definitions: dict[str, str] = Field(
        default_factory=dict, description="How members are grouped, per requested dimension"
    )
    kpis: dict[str, KpiFigure]
    breakdowns: dict[str, list[KpiGroup]] = Field(
        default_factory=dict,
        description="Per requested dimension (?by=tier|value_tier|segment, repeatable): one "
        "entry per group, each with current, previous and target",
    )
