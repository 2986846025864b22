"""Event types the points service publishes (payloads documented in docs/points-ledger.md)."""

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import CloudEvent, make_event
from loyalty_shared.ids import uuid7
from loyalty_shared.outbox import enqueue
from loyalty_shared.request_context import current_request_id
from loyalty_shared.topics import POINTS_EVENTS

SOURCE = "loyalty/points"

MEMBER_ENROLLED = "loyalty.member.enrolled.v1"
ORDER_RECORDED = "loyalty.order.recorded.v1"
ORDER_REFUNDED = "loyalty.order.refunded.v1"
POINTS_EARNED = "loyalty.points.earned.v1"
POINTS_MATURED = "loyalty.points.matured.v1"
POINTS_REVERSED = "loyalty.points.reversed.v1"
POINTS_REDEEMED = "loyalty.points.redeemed.v1"
REDEMPTION_CANCELLED = "loyalty.points.redemption_cancelled.v1"
POINTS_EXPIRED = "loyalty.points.expired.v1"
POINTS_ADJUSTED = "loyalty.points.adjusted.v1"
TIER_CHANGED = "loyalty.tier.changed.v1"
INTERACTION_RECORDED = "loyalty.interaction.recorded.v1"
MEMBER_ERASED = "loyalty.member.erased.v1"


def points_event(
    type_: str, member_id: str, data: dict[str, Any], *, time: datetime | None = None
) -> CloudEvent:
    return make_event(SOURCE, type_, member_id, data, time=time)


_TIME = TypeAdapter(datetime)


def outbox_row(
    type_: str, member_id: str, data: dict[str, Any], *, time: datetime
) -> dict[str, Any]:
    """The outbox row of ``points_event(...)`` (as ``loyalty_shared.outbox.outbox_row`` makes
    it), built directly for the checkout's two events.

    The pydantic envelope validated the type (a constant here, checked below for every type
    this module declares) and that the time carries an offset (the checkout's times are
    ``AwareDatetime``), then dumped every field again; here the envelope is written as that
    dump would write it, the time through pydantic's own serialiser. ``data`` must already
    be JSON values (strings, numbers, booleans, None, lists, dicts), as the checkout's are.
    ``tests/test_event_rows.py`` checks rows and bytes against the pydantic path.
    """
    if time.tzinfo is None:
        raise ValueError("event time must carry a UTC offset")
    event_id = uuid7()
    headers = {"ce_type": type_}
    request_id = current_request_id()
    if request_id:
        headers["x-request-id"] = request_id
    return {
        "event_id": event_id,
        "topic": POINTS_EVENTS,
        "key": member_id or event_id,
        "event_type": type_,
        "payload": {
            "specversion": "1.0",
            "id": event_id,
            "source": SOURCE,
            "type": type_,
            "time": _TIME.dump_python(time, mode="json"),
            "subject": member_id,
            "datacontenttype": "application/json",
            "data": data,
        },
        "headers": headers,
    }


def tier_changed(
    member_id: str,
    from_tier: str,
    to_tier: str,
    *,
    direction: str,
    reason: str,
    growth_value: int,
    at: datetime,
) -> CloudEvent:
    """``loyalty.tier.changed.v1``: one shape for the order flow, ladder changes and evaluation."""
    return points_event(
        TIER_CHANGED,
        member_id,
        {
            "member_id": member_id,
            "from_tier": from_tier,
            "to_tier": to_tier,
            "direction": direction,
            "reason": reason,
            "growth_value": growth_value,
            "occurred_at": at.isoformat(),
        },
        time=at,
    )


async def publish(session: AsyncSession, *events: CloudEvent) -> None:
    """Enqueue the events, except those about an erased member (kept under a pseudonym:
    refunds and expiry still move its books, but no other service hears of it again)."""
    from points.db import outbox
    from points.members.privacy import is_pseudonym

    await enqueue(
        await session.connection(),
        outbox,
        POINTS_EVENTS,
        *(e for e in events if not is_pseudonym(e.subject)),
    )


# the envelope's type check, once for every type above (``outbox_row`` skips it)
for _type in (
    MEMBER_ENROLLED,
    ORDER_RECORDED,
    ORDER_REFUNDED,
    POINTS_EARNED,
    POINTS_MATURED,
    POINTS_REVERSED,
    POINTS_REDEEMED,
    REDEMPTION_CANCELLED,
    POINTS_EXPIRED,
    POINTS_ADJUSTED,
    TIER_CHANGED,
    INTERACTION_RECORDED,
    MEMBER_ERASED,
):
    CloudEvent(source=SOURCE, type=_type)
