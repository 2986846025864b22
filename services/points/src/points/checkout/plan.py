"""What recording an order writes and answers: ``OrderPlan``, from the member's facts.

Pure, no I/O: the earning (``points.checkout.earning``), the answer, the two events (three
with an upgrade) and the parameters of the one write statement (``points.checkout.writes``).
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from loyalty_shared import jsontext
from loyalty_shared.db import CompiledStatement
from loyalty_shared.outbox import outbox_row
from loyalty_shared.topics import POINTS_EVENTS
from points import events
from points.campaigns.calculator import Campaign
from points.checkout.earning import Earned, Earning, earn
from points.checkout.facts import OrderMember
from points.checkout.writes import EVENT_JSON, write_statement
from points.ledger import models as lm
from points.orders.schemas import BalanceSummary, OrderIn, OrderOut
from points.settings import PointsSettings
from points.tiers.schemas import TierLadderIn
from points.tiers.upgrades import Upgrade


def request_fingerprint(data: OrderIn) -> str:
    canonical = orjson.dumps(data.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def earn_key(order_id: str) -> str:
    return f"order:{order_id}:earn"


@dataclass(frozen=True)
class OrderPlan:
    """What recording the order writes and answers, worked out from the member's facts."""

    fingerprint: str
    earned: Earned
    response: OrderOut
    params: dict[str, Any]  # the write statement's parameters

    @property
    def earning(self) -> Earning:
        return self.earned.earning

    @property
    def upgrade(self) -> Upgrade | None:
        return self.earned.upgrade

    @property
    def pending(self) -> bool:
        return self.earned.pending

    def statement(self, *, if_version: bool = False) -> CompiledStatement:
        """The write: order only (no points) or with its credit, and the upgrade if there is
        one (``p_new_tier``, ``p_ev2_*``); ``if_version`` for the optimistic path (written
        only if the balance row is at ``p_row_version``)."""
        return write_statement(
            if_version=if_version,
            upgrade=self.upgrade is not None,
            credit=self.earning.points > 0,
        )


def plan_order(
    settings: PointsSettings,
    data: OrderIn,
    ladder: TierLadderIn,
    campaigns: list[Campaign],
    member: OrderMember,
    now: datetime,
) -> OrderPlan:
    earned = earn(settings, data, ladder, campaigns, member, now)
    response = _answer(data, member, earned)
    fingerprint = request_fingerprint(data)
    written = _Written(
        [i.model_dump(mode="json") for i in data.items], earned.earning.details(), response
    )
    params = _order_params(settings, data, earned, fingerprint, written)
    for i, event_row in enumerate(_event_rows(settings, data, member, earned, written)):
        params.update(_event_params(i, event_row))
    if earned.upgrade is not None:
        params["p_new_tier"] = earned.upgrade.to_tier
    if earned.points > 0:
        params.update(_credit_params(data, member, earned))
    return OrderPlan(fingerprint, earned, response, params)


@dataclass(frozen=True)
class _Written:
    """What the order row and the events both carry (made once)."""

    items: list[dict[str, Any]]  # the order's items as JSON
    details: dict[str, Any]  # how the points were made (``Earning.details``)
    response: OrderOut


def _answer(data: OrderIn, member: OrderMember, earned: Earned) -> OrderOut:
    points, pending, locked = earned.points, earned.pending, member.locked
    return OrderOut(
        order_id=data.order_id,
        member_id=data.member_id,
        points_earned=points,
        points_pending=points if pending else 0,
        campaigns_applied=earned.earning.campaign.applied,
        balance=BalanceSummary(
            available=locked.available + (0 if pending else points),
            pending=locked.pending + (points if pending else 0),
        ),
        tier=earned.new_tier,
        tier_changed=earned.upgrade is not None,
    )


def _event_rows(
    settings: PointsSettings,
    data: OrderIn,
    member: OrderMember,
    earned: Earned,
    written: _Written,
) -> list[dict[str, Any]]:
    """``order.recorded``, ``points.earned`` and, with an upgrade, ``tier.changed``."""
    points, applied, response = earned.points, earned.earning.campaign.applied, written.response
    order_event = events.outbox_row(
        events.ORDER_RECORDED,
        data.member_id,
        {
            "order_id": data.order_id,
            "member_id": data.member_id,
            "amount": str(data.amount),
            "currency": data.currency or settings.default_currency,
            "discount_amount": str(data.discount_amount),
            "coupon_used": data.coupon_used,
            "channel": data.channel,
            "items": written.items,
            "occurred_at": data.occurred_at.isoformat(),
            "points_earned": points,
            "points_pending": response.points_pending,
            "campaigns_applied": applied,
            "first_order": not member.has_orders,
        },
        time=data.occurred_at,
    )
    earned_event = events.outbox_row(
        events.POINTS_EARNED,
        data.member_id,
        {
            "member_id": data.member_id,
            "points": points,
            "pending": earned.pending,
            "available_at": earned.available_at.isoformat(),
            "expires_at": earned.expires_at.isoformat() if earned.expires_at else None,
            "source_type": "order",
            "source_id": data.order_id,
            "occurred_at": data.occurred_at.isoformat(),
            "balance_available": response.balance.available,
            "balance_pending": response.balance.pending,
            "breakdown": written.details,
        },
        time=data.occurred_at,
    )
    rows = [order_event, earned_event]
    if earned.upgrade is not None:  # the CloudEvent every other tier change publishes
        rows.append(outbox_row(POINTS_EVENTS, earned.upgrade.event()))
    return rows


def _order_params(
    settings: PointsSettings,
    data: OrderIn,
    earned: Earned,
    fingerprint: str,
    written: _Written,
) -> dict[str, Any]:
    """The order row's parameters (``p_*`` of ``points.checkout.writes.ORDER_VALUES``)."""
    return {
        "p_order_id": data.order_id,
        "p_member_id": data.member_id,
        "p_amount": data.amount,
        "p_currency": data.currency or settings.default_currency,
        "p_discount_amount": data.discount_amount,
        "p_coupon_used": data.coupon_used,
        "p_channel": data.channel,
        "p_items": jsontext.dumps(written.items),
        "p_occurred_at": data.occurred_at,
        "p_points": earned.points,
        "p_growth": earned.earning.growth,
        "p_details": jsontext.dumps(written.details),
        "p_request_hash": fingerprint,
        # as the API answers it (the stored answer replays it)
        "p_response": written.response.__pydantic_serializer__.to_json(written.response).decode(),
    }


def _credit_params(data: OrderIn, member: OrderMember, earned: Earned) -> dict[str, Any]:
    """The write's lot, entry and balance-window-cache parameters (an order with points)."""
    points, pending = earned.points, earned.pending
    return {
        "p_lot_status": lm.LOT_PENDING if pending else lm.LOT_AVAILABLE,
        "p_available_at": earned.available_at,
        "p_expires_at": earned.expires_at,
        "p_entry_type": lm.PENDING if pending else lm.EARN,
        "p_d_available": 0 if pending else points,
        "p_d_pending": points if pending else 0,
        "p_earn_key": earn_key(data.order_id),
        "p_window_start": member.window_start,
        "p_window_sum": member.window_sum,
        "p_cache_entry_id": member.latest_entry_id,
    }


def _event_params(index: int, event_row: dict[str, Any]) -> dict[str, Any]:
    """An outbox row as the write's ``p_ev{index}_*`` parameters (JSON columns as text)."""
    return {
        f"p_ev{index}_{col}": jsontext.dumps(value) if col in EVENT_JSON else value
        for col, value in event_row.items()
    }
