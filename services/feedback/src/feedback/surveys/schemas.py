from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Audience = Literal["invited", "members"]

MEMBER_ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$")

LIKERT5_LABELS = (
    "very_dissatisfied",
    "dissatisfied",
    "neutral",
    "satisfied",
    "very_satisfied",
)


class QuestionType(StrEnum):
    likert5 = "likert5"
    nps = "nps"
    rating = "rating"
    single_choice = "single_choice"
    multiple_choice = "multiple_choice"
    text = "text"


class Metric(StrEnum):
    nps = "nps"
    csat = "csat"


SCALED = (QuestionType.likert5, QuestionType.rating)
CHOICE = (QuestionType.single_choice, QuestionType.multiple_choice)


# a question's id as an answer names it (at most as many answers as a survey has questions)
QuestionId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class QuestionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    type: QuestionType
    text: str = Field(min_length=1, max_length=1000)
    required: bool = False
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=100, description="single_choice / multiple_choice only"
    )
    metric: Metric | None = Field(
        default=None,
        description="nps: the NPS question (default for type nps); csat: the CSAT question "
        "(a rating or likert5; default: the survey's first rating question)",
    )
    factor: str | None = Field(
        default=None,
        max_length=64,
        description="CSI satisfaction factor this likert5/rating question measures",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "QuestionIn":
        if self.type in CHOICE:
            if not self.options:
                raise ValueError(f"{self.type.value} needs options")
            if len(set(self.options)) != len(self.options):
                raise ValueError("options must be unique")
        elif self.options is not None:
            raise ValueError(f"options are only for choice questions, not {self.type.value}")
        if self.metric is Metric.nps and self.type is not QuestionType.nps:
            raise ValueError("metric nps needs a question of type nps")
        if self.metric is Metric.csat and self.type not in SCALED:
            raise ValueError("metric csat needs a rating or likert5 question")
        if self.factor is not None and self.type not in SCALED:
            raise ValueError("a CSI factor needs a rating or likert5 question")
        return self


class SurveyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    questions: list[QuestionIn] = Field(min_length=1, max_length=100)
    allow_multiple_responses: bool = Field(
        default=False, description="false: one response per member"
    )
    open_complaint_for_detractors: bool = Field(
        default=False,
        description="a detractor (NPS 0-6) or CSAT 1-2 also opens a complaint",
    )
    audience: Audience = Field(
        default="invited",
        description="who it is addressed to: invited = the members invited to it "
        "(POST /v1/surveys/{id}/invitations); members = every member. A member token sees "
        "and answers only the surveys addressed to its member",
    )

    @model_validator(mode="after")
    def _unique(self) -> "SurveyIn":
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique")
        nps = [
            q
            for q in self.questions
            if q.type is QuestionType.nps and q.metric in (None, Metric.nps)
        ]
        if len(nps) > 1:
            raise ValueError("a survey has at most one NPS question")
        if sum(1 for q in self.questions if q.metric is Metric.csat) > 1:
            raise ValueError("a survey has at most one CSAT question")
        return self


class QuestionOut(BaseModel):
    id: str
    type: QuestionType
    text: str
    required: bool
    options: list[str] | None
    metric: Metric | None
    factor: str | None


class SurveyOut(BaseModel):
    id: str
    name: str
    description: str | None
    questions: list[QuestionOut]
    allow_multiple_responses: bool
    open_complaint_for_detractors: bool
    audience: Audience
    created_at: datetime


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: str = MEMBER_ID
    answers: dict[QuestionId, Any] = Field(
        max_length=100,
        description="question id -> answer; a skipped question is absent or null (not an answer). "
        "likert5: 1-5 or very_dissatisfied..very_satisfied; nps: 0-10; rating: 1-5; "
        "single_choice: an option; multiple_choice: a list of options; text: a string",
    )
    complaint_id: str | None = Field(default=None, max_length=36)
    order_id: str | None = Field(default=None, max_length=128)


class ResponseOut(BaseModel):
    id: str
    survey_id: str
    member_id: str
    complaint_id: str | None
    order_id: str | None
    answers: dict[str, Any]
    nps: int | None
    csat: int | None
    submitted_at: datetime
    follow_up_id: str | None = Field(description="the follow-up a low score opened, if any")
    opened_complaint_id: str | None


class InvitationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: str = MEMBER_ID
    complaint_id: str | None = Field(
        default=None, max_length=36, description="the member's complaint the survey is about"
    )
    order_id: str | None = Field(
        default=None, max_length=128, description="the order the survey is about"
    )


class InvitationsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invitations: list[InvitationIn] = Field(min_length=1, max_length=500)


class InvitationsOut(BaseModel):
    invited: int = Field(description="new invitations")
    already_invited: int = Field(description="the same member and subject were already invited")


class AddressedQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    type: QuestionType
    text: str
    required: bool
    options: list[str] | None


class AddressedSurvey(BaseModel):
    """A survey addressed to the member and not yet answered, with what the app needs to ask
    it (no CSI factors, metrics or what a low score sets off)."""

    model_config = ConfigDict(extra="forbid")

    survey_id: str
    name: str
    description: str | None
    questions: list[AddressedQuestion]
    addressed_at: datetime = Field(description="when the member was invited (or it was made)")
    complaint_id: str | None = Field(description="send it with the answer: the survey is about it")
    order_id: str | None = Field(description="send it with the answer: the survey is about it")


class AddressedSurveyPage(BaseModel):
    items: list[AddressedSurvey]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next (older) page")
