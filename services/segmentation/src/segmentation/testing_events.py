"""Test factories: CloudEvents as the points and feedback services publish them, built from
their contract models (``loyalty_shared.contracts``), so no test feeds a shape no producer
makes."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from loyalty_shared.contracts.feedback import ComplaintOpenedV1, SurveyCompletedV1
from loyalty_shared.contracts.points import (
    InteractionRecordedV1,
    MemberCheckedInV1,
    MemberEnrolledV1,
    MemberErasedV1,
    OrderItemV1,
    OrderRecordedV1,
    OrderRefundedV1,
    PointsEarnedV1,
    TierChangedV1,
)
from loyalty_shared.events import CloudEvent


def ts(text: str) -> str:
    """'2025-06-01' or '2025-06-01T10:00' -> RFC 3339 UTC."""
    if "T" not in text:
        text += "T12:00:00"
    return datetime.fromisoformat(text + "+00:00").isoformat()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(ts(text))


def member_id() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def enrolled(member: str, at: str = "2024-01-01", tier: str = "bronze") -> CloudEvent:
    return MemberEnrolledV1(
        member_id=member, tier=tier, enrolled_at=_at(at), timezone="Europe/Paris"
    ).event(member)


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
    paid = Decimal(amount)
    return OrderRecordedV1(
        order_id=order_id or f"o-{uuid.uuid4().hex[:12]}",
        member_id=member,
        amount=paid,
        currency="EUR",
        discount_amount=Decimal(discount),
        coupon_used="COUPON" if coupon else None,
        channel=channel,
        items=[
            OrderItemV1(sku=f"sku-{c}", category=c, unit_price=paid, quantity=1) for c in categories
        ],
        occurred_at=_at(at),
        points_earned=int(paid),
        points_pending=0,
        campaigns_applied=[],
        first_order=False,
    ).event(member, event_id=event_id)


def refund(member: str, order_id: str, amount: str, at: str) -> CloudEvent:
    return OrderRefundedV1(
        order_id=order_id,
        refund_id=f"r-{uuid.uuid4().hex[:12]}",
        member_id=member,
        amount=Decimal(amount),
        currency="EUR",
        order_amount=Decimal(amount),
        refunded_total=Decimal(amount),
        fully_refunded=False,
        points_reversed=0,
        occurred_at=_at(at),
    ).event(member)


def points_earned(member: str, points: int, balance: int, at: str) -> CloudEvent:
    when = _at(at)
    return PointsEarnedV1(
        member_id=member,
        points=points,
        pending=False,
        available_at=when,
        expires_at=when + timedelta(days=365),
        source_type="order",
        source_id="x",
        occurred_at=when,
        balance_available=balance,
        balance_pending=0,
        breakdown={},
    ).event(member)


def interaction(member: str, kind: str, at: str) -> CloudEvent:
    return InteractionRecordedV1(
        event_id=f"ev-{uuid.uuid4().hex[:12]}",
        member_id=member,
        type=kind,
        occurred_at=_at(at),
        attributes={},
        points=0,
        reason="no_rule",
    ).event(member)


def checked_in(member: str, at: str, points: int = 5) -> CloudEvent:
    when = _at(at)
    return MemberCheckedInV1(
        member_id=member, local_day=when.date(), occurred_at=when, points=points
    ).event(member)


def complaint(member: str, at: str) -> CloudEvent:
    opened = _at(at)
    return ComplaintOpenedV1(
        complaint_id=f"c-{uuid.uuid4().hex[:8]}",
        member_id=member,
        channel="app",
        kind="complaint",
        category="delivery",
        cause=None,
        severity="medium",
        reported_severity=None,
        order_id=None,
        opened_at=opened,
        first_response_due_at=opened + timedelta(hours=24),
        resolution_due_at=opened + timedelta(hours=48),
    ).event(member)


def survey(
    member: str, *, nps: int | None = None, csat: int | None = None, at: str = "2025-01-01"
) -> CloudEvent:
    return SurveyCompletedV1(
        survey_id="s-1",
        response_id=f"sr-{uuid.uuid4().hex[:12]}",
        member_id=member,
        nps=nps,
        csat=csat,
        complaint_id=None,
        order_id=None,
        submitted_at=_at(at),
    ).event(member)


def tier_changed(member: str, to_tier: str, at: str) -> CloudEvent:
    return TierChangedV1(
        member_id=member,
        from_tier="bronze",
        to_tier=to_tier,
        direction="up",
        reason="order",
        growth_value=0,
        occurred_at=_at(at),
    ).event(member)


def erased(member: str) -> CloudEvent:
    return MemberErasedV1(member_id=member, erased_at=datetime.now().astimezone()).event(member)
