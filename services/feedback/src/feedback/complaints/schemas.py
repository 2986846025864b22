from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MEMBER_ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$")


class Channel(StrEnum):
    phone = "phone"
    online_chat = "online_chat"
    email = "email"
    app = "app"
    web = "web"
    store = "store"
    social = "social"


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class Kind(StrEnum):
    complaint = "complaint"
    enquiry = "enquiry"


class Action(StrEnum):
    acknowledge = "acknowledge"
    start = "start"
    respond = "respond"
    escalate = "escalate"
    resolve = "resolve"
    close = "close"
    reopen = "reopen"
    hand_over = "hand_over"
    pause = "pause"
    resume = "resume"


class ComplaintIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: str = MEMBER_ID
    channel: Channel
    category: str = Field(min_length=1, max_length=64, examples=["delivery"])
    cause: str | None = Field(
        default=None, max_length=64, description="root cause, if known (else set on an action)"
    )
    kind: Kind = Field(
        default=Kind.complaint,
        description="an enquiry gets short first-response clocks (10 min online, 30 offline)",
    )
    description: str = Field(min_length=1, max_length=10_000)
    order_id: str | None = Field(default=None, max_length=128)
    product_ref: str | None = Field(default=None, max_length=128)
    severity: Severity | None = Field(
        default=None,
        description="From ops: the complaint's severity (its SLA). From a member or a "
        "storefront: kept as reported_severity, a hint; the SLA uses the default severity "
        "until ops set one (docs/security.md)",
    )


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    note: str | None = Field(default=None, max_length=10_000)
    to: str | None = Field(
        default=None, min_length=1, max_length=128, description="hand_over: the new owner"
    )
    cause: str | None = Field(
        default=None, max_length=64, description="set or refine the root cause with any action"
    )
    severity: Severity | None = Field(
        default=None,
        description="set the severity with any action: the SLA policies are matched again and "
        "the running clocks keep the working time already spent",
    )


class ClockOut(BaseModel):
    target_minutes: int | None
    due_at: datetime
    met_at: datetime | None
    breached: bool
    running: bool


class SlaOut(BaseModel):
    policy_ids: list[str]
    calendar_id: str | None = Field(description="null = the clocks run 24/7")
    pausable: bool
    paused: bool
    paused_at: datetime | None
    paused_seconds: float = Field(description="working time credited back for pauses so far")
    first_response: ClockOut
    resolution: ClockOut
    breached: bool


class HistoryEntry(BaseModel):
    action: str
    from_status: str | None
    to_status: str
    actor: str
    note: str | None
    details: dict[str, Any]
    at: datetime


class ComplaintOut(BaseModel):
    id: str
    member_id: str
    channel: Channel
    kind: Kind
    category: str
    cause: str | None
    description: str
    order_id: str | None
    product_ref: str | None
    severity: Severity = Field(description="ops' severity (the SLA's), or the default")
    reported_severity: Severity | None = Field(
        description="the severity a member or storefront gave when opening it (a hint)"
    )
    status: str
    created_at: datetime
    updated_at: datetime | None
    opened_by: str | None
    owner_id: str | None
    member_tier: str | None
    member_value_tier: str | None
    first_response_due_at: datetime
    resolution_due_at: datetime
    first_responded_at: datetime | None
    escalated_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    reopen_count: int
    reopen_until: datetime | None = Field(
        description="a resolved/closed complaint can be reopened until then"
    )
    breached: bool
    allowed_actions: list[Action]
    sla: SlaOut
    history: list[HistoryEntry] | None = Field(
        default=None, description="every action with actor, note and time (single complaint only)"
    )


class ComplaintPage(BaseModel):
    items: list[ComplaintOut]
    next_cursor: str | None


class MemberComplaintOut(BaseModel):
    """A complaint as its member sees it: what they reported, where it stands, and when they
    are promised an answer and a solution.

    Left out, as ops' working data: the severity ops set and the cause they found, the owner
    and who opened it, the member's tier and value tier as feedback saw them, the SLA policies
    chosen by them, breaches, allowed actions and the history of agents' actions and notes
    (docs/feedback.md, "The member's own complaints")."""

    model_config = ConfigDict(extra="forbid")

    id: str
    member_id: str
    channel: Channel
    kind: Kind
    category: str
    description: str
    order_id: str | None
    product_ref: str | None
    reported_severity: Severity | None = Field(description="the severity the member gave, if any")
    status: str
    created_at: datetime
    updated_at: datetime | None
    first_response_due_at: datetime = Field(description="a first answer is promised by then")
    resolution_due_at: datetime = Field(description="a solution is promised by then")
    first_responded_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None


class MemberComplaintPage(BaseModel):
    items: list[MemberComplaintOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next (older) page")
