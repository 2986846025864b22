from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Reason(StrEnum):
    post_resolution = "post_resolution"
    monthly_high_value = "monthly_high_value"
    churn_risk = "churn_risk"
    survey_detractor = "survey_detractor"


class FollowUpStatus(StrEnum):
    pending = "pending"
    completed = "completed"


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(min_length=1, max_length=10_000, description="what the member said")
    rectified: bool = Field(description="was the member's problem put right")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_id: str = Field(min_length=1, max_length=128, description="the agent who makes the visit")


class FollowUpOut(BaseModel):
    id: str
    member_id: str
    reason: Reason
    complaint_id: str | None
    survey_response_id: str | None = Field(
        description="the survey answer that opened it (detractor) or, for a post-resolution "
        "visit, the member's survey answer about the complaint"
    )
    trigger_score: int | None = Field(description="the NPS/CSAT answer that opened it, if any")
    due_at: datetime
    owner_id: str | None
    status: FollowUpStatus
    outcome: str | None
    rectified: bool | None
    completed_at: datetime | None
    completed_by: str | None
    next_response_id: str | None = Field(
        description="the member's next survey response after this follow-up (closed loop)"
    )
    next_score: int | None
    created_at: datetime


class FollowUpPage(BaseModel):
    items: list[FollowUpOut]
    next_cursor: str | None
