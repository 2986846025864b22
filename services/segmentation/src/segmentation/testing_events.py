"""Test factories: CloudEvents as the points and feedback services publish them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from loyalty_shared.events import CloudEvent, make_event


def ts(text: str) -> str:
    """'2025-06-01' or '2025-06-01T10:00' -> RFC 3339 UTC."""
    if "T" not in text:
        text += "T12:00:00"
    return datetime.fromisoformat(text + "+00:00").isoformat()


def member_id() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def enrolled(member: str, at: str = "2024-01-01", tier: str = "bronze") -> CloudEvent:
    return make_event(
        "loyalty/points",
        "loyalty.member.enrolled.v1",
        member,
        {"member_id": member, "tier": tier, "enrolled_at": ts(at), "timezone": "Europe/Paris"},
    )


def order(
    member: str,
    at: str,
    amount: str,
    *,
    order_id: str | None = None,
    coupon: bool = False,
    discount: str = "0",
    channel: str | None = "web",
    categories: tuple[str, ...] = ("books",),
    event_id: str | None = None,
) -> CloudEvent:
    data: dict[str, Any] = {
        "order_id": order_id or f"o-{uuid.uuid4().hex[:12]}",
        "member_id": member,
        "amount": amount,
        "currency": "EUR",
        "discount_amount": discount,
        "coupon_used": coupon,
        "channel": channel,
        "items": [
            {"sku": f"sku-{c}", "category": c, "unit_price": amount, "quantity": 1}
            for c in categories
        ],
        "occurred_at": ts(at),
        "points_earned": int(float(amount)),
    }
    return make_event(
        "loyalty/points", "loyalty.order.recorded.v1", member, data, event_id=event_id
    )


def refund(member: str, order_id: str, amount: str, at: str) -> CloudEvent:
    return make_event(
        "loyalty/points",
        "loyalty.order.refunded.v1",
        member,
        {
            "order_id": order_id,
            "member_id": member,
            "refund_id": f"r-{uuid.uuid4().hex[:12]}",
            "amount": amount,
            "occurred_at": ts(at),
        },
    )


def points_earned(member: str, points: int, balance: int, at: str) -> CloudEvent:
    return make_event(
        "loyalty/points",
        "loyalty.points.earned.v1",
        member,
        {
            "member_id": member,
            "points": points,
            "source_type": "order",
            "source_id": "x",
            "occurred_at": ts(at),
            "balance_available": balance,
        },
    )


def interaction(member: str, kind: str, at: str) -> CloudEvent:
    return make_event(
        "loyalty/points",
        "loyalty.interaction.recorded.v1",
        member,
        {"member_id": member, "type": kind, "occurred_at": ts(at)},
    )


def complaint(member: str, at: str) -> CloudEvent:
    return make_event(
        "loyalty/feedback",
        "loyalty.complaint.opened.v1",
        member,
        {"complaint_id": f"c-{uuid.uuid4().hex[:8]}", "member_id": member, "opened_at": ts(at)},
    )


def survey(
    member: str, *, nps: int | None = None, csat: int | None = None, at: str = "2025-01-01"
) -> CloudEvent:
    data: dict[str, Any] = {"member_id": member, "survey_id": "s-1", "occurred_at": ts(at)}
    if nps is not None:
        data["nps"] = nps
    if csat is not None:
        data["csat"] = csat
    return make_event("loyalty/feedback", "loyalty.survey.completed.v1", member, data)


def tier_changed(member: str, to_tier: str, at: str) -> CloudEvent:
    return make_event(
        "loyalty/points",
        "loyalty.tier.changed.v1",
        member,
        {"member_id": member, "from_tier": "bronze", "to_tier": to_tier, "occurred_at": ts(at)},
    )


def erased(member: str) -> CloudEvent:
    return make_event("loyalty/points", "loyalty.member.erased.v1", member, {"member_id": member})
