"""The delivery log: a subscription's deliveries and attempts; a manual retry; a test event."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import make_event
from loyalty_shared.problems import Conflict, NotFound, Unprocessable
from webhooks.deliveries.models import PENDING, Attempt, Delivery
from webhooks.deliveries.repository import TEST_EVENT_TYPE, delivery_body
from webhooks.deliveries.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    Queued,
)
from webhooks.settings import WebhooksSettings
from webhooks.subscriptions import service as subscriptions

TEST_SOURCE = "loyalty/webhooks"


class AlreadyPending(Conflict):
    slug = "delivery-pending"
    title = "Delivery still pending"


def _out(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "subscription_id": d.subscription_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "member_id": d.member_key,
        "status": d.status,
        "attempts": d.attempts,
        "created_at": d.created_at,
        "next_attempt_at": d.next_attempt_at if d.status == PENDING else None,
        "give_up_at": d.give_up_at,
        "delivered_at": d.delivered_at,
        "finished_at": d.finished_at,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
    }


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise Unprocessable(
            "cursor is not one this API gave",
            errors=[{"field": "query.cursor", "message": "unknown cursor", "type": "value_error"}],
        )
    return int(value)


async def list_deliveries(
    session: AsyncSession,
    subscription_id: str,
    *,
    status: str | None,
    event_id: str | None,
    limit: int,
    cursor: str | None,
) -> DeliveryPage:
    """Newest first, cursor paged."""
    await subscriptions.get(session, subscription_id)
    query = select(Delivery).where(Delivery.subscription_id == subscription_id)
    if status is not None:
        query = query.where(Delivery.status == status)
    if event_id is not None:
        query = query.where(Delivery.event_id == event_id)
    before = _cursor(cursor)
    if before is not None:
        query = query.where(Delivery.id < before)
    rows = list(
        (await session.execute(query.order_by(Delivery.id.desc()).limit(limit + 1))).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(
        items=[DeliveryOut(**_out(d)) for d in rows],
        next_cursor=str(rows[-1].id) if more else None,
    )


async def _delivery(session: AsyncSession, subscription_id: str, delivery_id: int) -> Delivery:
    found = (
        await session.execute(
            select(Delivery).where(
                Delivery.id == delivery_id, Delivery.subscription_id == subscription_id
            )
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"No delivery {delivery_id} of webhook subscription {subscription_id}")
    return found


async def get_delivery(
    session: AsyncSession, subscription_id: str, delivery_id: int
) -> DeliveryDetail:
    d = await _delivery(session, subscription_id, delivery_id)
    attempts = (
        await session.execute(
            select(Attempt).where(Attempt.delivery_id == d.id).order_by(Attempt.id)
        )
    ).scalars()
    return DeliveryDetail(
        **_out(d),
        attempt_log=[
            AttemptOut(
                attempt=a.attempt,
                attempted_at=a.attempted_at,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
                outcome=a.outcome,
                next_attempt_at=a.next_attempt_at,
            )
            for a in attempts
        ],
        event=orjson.loads(d.body),
    )


async def retry(
    session: AsyncSession, settings: WebhooksSettings, subscription_id: str, delivery_id: int
) -> Queued:
    """A delivered or failed delivery goes out again now, retried for a new window (the same
    event id: a receiver that had it ignores it)."""
    await subscriptions.get(session, subscription_id)
    row = (
        await session.execute(
            text(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), "
                "give_up_at = now() + make_interval(secs => :window), leased_until = NULL, "
                "finished_at = NULL "
                "WHERE id = :id AND subscription_id = :sub AND status <> 'pending' "
                "RETURNING event_id"
            ),
            {"id": delivery_id, "sub": subscription_id, "window": settings.retry_window_seconds},
        )
    ).first()
    if row is None:
        await _delivery(session, subscription_id, delivery_id)  # 404 if it is not there
        raise AlreadyPending(
            f"Delivery {delivery_id} is still pending: it is attempted again on its own"
        )
    return Queued(delivery_id=delivery_id, event_id=row.event_id, status=DeliveryStatus.pending)


async def send_test(
    session: AsyncSession, settings: WebhooksSettings, subscription_id: str
) -> Queued:
    """A ``loyalty.webhook.test.v1`` event to this subscription alone (also when paused: the
    way to check an endpoint before resuming), signed and logged like any other."""
    sub = await subscriptions.get(session, subscription_id)
    event = make_event(
        TEST_SOURCE,
        TEST_EVENT_TYPE,
        None,
        {"subscription_id": sub.id, "message": "A test event from the loyalty platform"},
    )
    delivery = Delivery(
        subscription_id=sub.id,
        event_id=event.id,
        event_type=event.type,
        member_key=None,
        body=delivery_body(event),
        give_up_at=event.time + timedelta(seconds=settings.retry_window_seconds),
    )
    session.add(delivery)
    await session.flush()
    return Queued(delivery_id=delivery.id, event_id=event.id, status=DeliveryStatus.pending)
