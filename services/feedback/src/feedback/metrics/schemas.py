from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from feedback.ahp.schemas import Matrix, WeightsOut

KEY = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")


class FactorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = KEY
    name: str = Field(min_length=1, max_length=200)


class CriterionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = KEY
    name: str = Field(min_length=1, max_length=200)
    factors: list[FactorIn] = Field(min_length=1, max_length=10)


class HierarchyIn(BaseModel):
    """Criteria -> factors, with a pairwise matrix for the criteria and one per criterion."""

    model_config = ConfigDict(extra="forbid")

    criteria: list[CriterionIn] = Field(min_length=1, max_length=10)
    criteria_matrix: Matrix
    factor_matrices: dict[Annotated[str, StringConstraints(max_length=64)], Matrix] = Field(
        max_length=10,
        description="criterion key -> pairwise matrix of its factors (in the listed order)",
    )


class FactorWeight(BaseModel):
    key: str
    name: str
    criterion: str
    local_weight: float
    weight: float = Field(description="global weight = criterion weight x local weight")


class HierarchyOut(BaseModel):
    criteria: list[CriterionIn]
    criteria_matrix: list[list[float]]
    factor_matrices: dict[str, list[list[float]]]
    criteria_weights: dict[str, WeightsOut]
    factor_weights: list[FactorWeight]
    is_default: bool


class Period(BaseModel):
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime

    model_config = ConfigDict(populate_by_name=True)


class NpsSlice(BaseModel):
    tier: str | None
    responses: int
    score: float | None
    hidden: bool


class Nps(BaseModel):
    method: str = (
        "% of 9-10 answers minus % of 0-6 answers among NPS questions answered in the period; "
        "a skipped question is not an answer"
    )
    responses: int
    promoters: int
    passives: int
    detractors: int
    score: float | None = Field(description="-100..100; null when hidden")
    ci95: list[float] | None = Field(description="95% confidence interval (normal approximation)")
    hidden: bool = Field(description="true when responses < min_sample")
    min_sample: int
    target: float
    by_tier: list[NpsSlice]


class Csat(BaseModel):
    method: str = "mean of 1-5 CSAT ratings answered in the period"
    responses: int
    mean: float | None
    satisfied_share: float | None = Field(description="share of 4-5 ratings (for reference)")
    target: float


class CsiFactor(BaseModel):
    key: str
    criterion: str
    weight: float
    answers: int
    dc: float | None = Field(description="DC_i = sum x_ij n_ij / (x_max sum n_ij), x_max = 5")


class Csi(BaseModel):
    method: str = (
        "CSI = sum w_i DC_i over the factors answered in the period; when some factors have no "
        "answers the weights of the answered ones are renormalised to sum to 1 (complete=false)"
    )
    value: float | None
    complete: bool
    missing_factors: list[str]
    factors: list[CsiFactor]


class Rate(BaseModel):
    numerator: int
    denominator: int
    rate: float | None
    target: float | None = None


class SlaCompliance(BaseModel):
    method: str = (
        "complaints opened in the period: a clock counts once it stopped or breached; "
        "compliant = stopped without a breach"
    )
    first_response: Rate
    resolution: Rate
    overall: Rate


class ParetoItem(BaseModel):
    cause: str
    count: int
    share: float
    cumulative_share: float
    vital_few: bool = Field(description="within the causes that make up the first 80%")


class PeriodMetrics(BaseModel):
    nps: Nps
    csat: Csat
    csi: Csi
    complaints_opened: int
    complaint_rate: Rate = Field(
        description="complaints opened in the period / orders recorded in the period "
        "(orders as points reports them)"
    )
    fcr: Rate = Field(
        description="first-contact resolution: complaints first resolved in the period without "
        "escalation, hand-over or reopening / complaints first resolved in the period"
    )
    sla_compliance: SlaCompliance
    mean_minutes_to_first_response: float | None = Field(
        description="over complaints first answered in the period (wall-clock minutes)"
    )
    mean_minutes_to_resolution: float | None = Field(
        description="over complaints first resolved in the period (wall-clock minutes)"
    )
    causes: list[ParetoItem]
    follow_up_coverage: Rate = Field(
        description="complaints first resolved in the period whose post-resolution follow-up "
        "is completed / complaints first resolved in the period"
    )
    rectification: Rate = Field(
        description="follow-ups completed in the period with the problem rectified / completed"
    )


class MetricsOut(BaseModel):
    period: Period
    previous_period: Period
    current: PeriodMetrics
    previous: PeriodMetrics
