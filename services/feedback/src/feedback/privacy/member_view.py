"""The member's own export: what feedback holds about them, as a member token reads it.

A member is entitled to their own facts: the complaints they made (what they said, where
each stands, the promised times), the follow-up visits made to them and what was noted of
what they said, their survey answers and invitations, their orders as feedback knows them.
Feedback's internal view of them is left out: the projection (their tier and value tier as
feedback saw them), why a follow-up was planned (a churn risk, a monthly high-value visit,
a detractor score), the severity and cause ops set, the SLA policies their value chose,
owners, and agents' notes on each action. The operator's export (admin) keeps all of it
(docs/gateway.md, "Member data export").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from feedback.complaints.schemas import MemberComplaintOut

_COMPLAINT = tuple(f for f in MemberComplaintOut.model_fields if f != "member_id")
_HISTORY = ("action", "from_status", "to_status", "at")
_FOLLOW_UP = ("id", "complaint_id", "due_at", "status", "outcome", "rectified", "completed_at")
_RESPONSE = (
    "id",
    "survey_id",
    "complaint_id",
    "order_id",
    "answers",
    "nps",
    "csat",
    "submitted_at",
)
_INVITATION = ("survey_id", "complaint_id", "order_id", "invited_at", "answered_at")
_ORDER = ("order_id", "occurred_at", "refunded_at")


def _pick(row: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {f: row.get(f) for f in fields}


def for_member(doc: dict[str, Any]) -> dict[str, Any]:
    """Only the allowed fields of each part (a column added later stays out until listed)."""
    return {
        "member_id": doc["member_id"],
        "complaints": [
            {**_pick(c, _COMPLAINT), "history": [_pick(h, _HISTORY) for h in c["history"]]}
            for c in doc["complaints"]
        ],
        "follow_ups": [_pick(f, _FOLLOW_UP) for f in doc["follow_ups"]],
        "survey_responses": [_pick(r, _RESPONSE) for r in doc["survey_responses"]],
        "survey_invitations": [_pick(i, _INVITATION) for i in doc["survey_invitations"]],
        "orders": [_pick(o, _ORDER) for o in doc["orders"]],
    }
