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


class KpiFigure(BaseModel):
    current: Any
    previous: Any


class KpisOut(BaseModel):
    period: dict[str, datetime]
    previous_period: dict[str, datetime]
    definitions: dict[str, str]
    kpis: dict[str, KpiFigure]
