"""Events the feedback service publishes (topic ``loyalty.feedback.events``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from loyalty_shared.contracts.base import EventPayload, Timestamp
from loyalty_shared.topics import FEEDBACK_EVENTS

_AT = "2026-11-23T10:15:02.113000+00:00"


class FeedbackEvent(EventPayload):
    SOURCE: ClassVar[str] = "loyalty/feedback"
    TOPIC: ClassVar[str] = FEEDBACK_EVENTS


class ComplaintOpenedV1(FeedbackEvent):
    """A complaint was opened, with the SLA deadlines it was given."""

    TYPE: ClassVar[str] = "loyalty.complaint.opened.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "complaint_id": "c-1",
        "member_id": "m-1001",
        "channel": "app",
        "kind": "complaint",
        "category": "delivery",
        "cause": None,
        "severity": "medium",
        "reported_severity": "high",
        "order_id": "o-77",
        "opened_at": _AT,
        "first_response_due_at": "2026-11-23T14:15:02.113000+00:00",
        "resolution_due_at": "2026-11-24T10:15:02.113000+00:00",
    }

    complaint_id: str
    member_id: str
    channel: str
    kind: str = Field(description="complaint or enquiry")
    category: str
    cause: str | None
    severity: str = Field(description="ops' severity, or the default until they set one")
    reported_severity: str | None = Field(description="what the member or storefront said")
    order_id: str | None
    opened_at: Timestamp
    first_response_due_at: Timestamp
    resolution_due_at: Timestamp


class _ComplaintTransition(FeedbackEvent):
    complaint_id: str
    member_id: str
    status: str = Field(description="the status after the action")
    action: str
    actor: str
    owner_id: str | None
    note: str | None
    category: str
    cause: str | None
    at: Timestamp


def _transition_example(status: str, action: str) -> dict[str, Any]:
    return {
        "complaint_id": "c-1",
        "member_id": "m-1001",
        "status": status,
        "action": action,
        "actor": "agent-ann",
        "owner_id": "agent-ann",
        "note": None,
        "category": "delivery",
        "cause": "late courier",
        "at": _AT,
    }


class ComplaintAcknowledgedV1(_ComplaintTransition):
    """The first response to an open complaint (its first-response clock stopped)."""

    TYPE: ClassVar[str] = "loyalty.complaint.acknowledged.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = _transition_example("acknowledged", "acknowledge")


class ComplaintEscalatedV1(_ComplaintTransition):
    """The complaint went to the cross-department group."""

    TYPE: ClassVar[str] = "loyalty.complaint.escalated.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = _transition_example("escalated", "escalate")


class ComplaintResolvedV1(_ComplaintTransition):
    """The complaint was resolved (a follow-up visit is due within 3 days)."""

    TYPE: ClassVar[str] = "loyalty.complaint.resolved.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        **_transition_example("resolved", "resolve"),
        "first_contact_resolution": True,
        "resolved_at": _AT,
    }

    first_contact_resolution: bool
    resolved_at: Timestamp


class ComplaintClosedV1(_ComplaintTransition):
    """The complaint was closed."""

    TYPE: ClassVar[str] = "loyalty.complaint.closed.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = _transition_example("closed", "close")


class ComplaintReopenedV1(_ComplaintTransition):
    """A resolved or closed complaint was reopened (a new resolution clock runs)."""

    TYPE: ClassVar[str] = "loyalty.complaint.reopened.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = _transition_example("reopened", "reopen")


class ComplaintSlaBreachedV1(FeedbackEvent):
    """A complaint's clock ran out (once per clock and cycle)."""

    TYPE: ClassVar[str] = "loyalty.complaint.sla_breached.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "breach_id": "b-1",
        "complaint_id": "c-1",
        "member_id": "m-1001",
        "clock": "first_response",
        "cycle": 0,
        "due_at": _AT,
        "detected_at": "2026-11-23T10:15:30+00:00",
        "member_tier": "gold",
        "owner_id": None,
    }

    breach_id: str
    complaint_id: str
    member_id: str
    clock: Literal["first_response", "resolution"]
    cycle: int = Field(description="0, then one more per reopen")
    due_at: Timestamp
    detected_at: Timestamp
    member_tier: str | None
    owner_id: str | None


class ComplaintGoodwillGrantedV1(FeedbackEvent):
    """Goodwill points for a breached clock, for the points service to credit (capped)."""

    TYPE: ClassVar[str] = "loyalty.complaint.goodwill_granted.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "grant_id": "g-1",
        "breach_id": "b-1",
        "complaint_id": "c-1",
        "member_id": "m-1001",
        "points": 100,
        "reason": "SLA breach (first_response) on complaint c-1",
    }

    grant_id: str = Field(min_length=1, max_length=128)
    breach_id: str
    complaint_id: str
    member_id: str = Field(min_length=1, max_length=128)
    points: int = Field(ge=0, le=10_000_000)
    reason: str


class SurveyCompletedV1(FeedbackEvent):
    """A member answered a survey; its NPS and CSAT answers, if it asked them."""

    TYPE: ClassVar[str] = "loyalty.survey.completed.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "survey_id": "s-1",
        "response_id": "sr-1",
        "member_id": "m-1001",
        "nps": 9,
        "csat": 5,
        "complaint_id": None,
        "order_id": "o-77",
        "submitted_at": _AT,
    }

    survey_id: str
    response_id: str = Field(min_length=1, max_length=128)
    member_id: str = Field(min_length=1, max_length=128)
    nps: int | None = Field(ge=0, le=10)
    csat: int | None = Field(ge=1, le=5)
    complaint_id: str | None
    order_id: str | None
    submitted_at: Timestamp


class FollowUpCreatedV1(FeedbackEvent):
    """A follow-up visit was scheduled (after a resolution, a detractor, churn risk, monthly)."""

    TYPE: ClassVar[str] = "loyalty.follow_up.created.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "follow_up_id": "f-1",
        "member_id": "m-1001",
        "reason": "post_resolution",
        "complaint_id": "c-1",
        "survey_response_id": None,
        "due_at": "2026-11-26T10:15:02.113000+00:00",
        "owner_id": "agent-ann",
    }

    follow_up_id: str
    member_id: str
    reason: str = Field(
        description="post_resolution, monthly_high_value, churn_risk or survey_detractor"
    )
    complaint_id: str | None
    survey_response_id: str | None
    due_at: Timestamp
    owner_id: str | None


class FollowUpCompletedV1(FeedbackEvent):
    """A follow-up visit's outcome was recorded."""

    TYPE: ClassVar[str] = "loyalty.follow_up.completed.v1"
    EXAMPLE: ClassVar[dict[str, Any]] = {
        "follow_up_id": "f-1",
        "member_id": "m-1001",
        "reason": "post_resolution",
        "complaint_id": "c-1",
        "rectified": True,
        "completed_by": "agent-ann",
        "completed_at": _AT,
    }

    follow_up_id: str
    member_id: str
    reason: str
    complaint_id: str | None
    rectified: bool | None
    completed_by: str
    completed_at: Timestamp


PUBLISHED: tuple[type[FeedbackEvent], ...] = (
    ComplaintOpenedV1,
    ComplaintAcknowledgedV1,
    ComplaintEscalatedV1,
    ComplaintResolvedV1,
    ComplaintClosedV1,
    ComplaintReopenedV1,
    ComplaintSlaBreachedV1,
    ComplaintGoodwillGrantedV1,
    SurveyCompletedV1,
    FollowUpCreatedV1,
    FollowUpCompletedV1,
)
