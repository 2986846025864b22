"""Event types the points service publishes: the payload models are its contract
(``loyalty_shared.contracts.points``, where consumers read them too; docs/events.md).

Every event is built from its model: ``SomeEventV1(...).event(member_id, time=...)`` at the
call site, or ``points_event(TYPE, member_id, data)``, which checks ``data`` against the
model (no field the model lacks, none missing) and writes what the model dumps. The
checkout's two events are written by ``outbox_row`` without pydantic, byte for byte what the
model path writes (``tests/test_event_rows.py``).
"""

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.contracts import points as contract
from loyalty_shared.events import CloudEvent
from loyalty_shared.ids import uuid7
from loyalty_shared.outbox import enqueue
from loyalty_shared.request_context import current_request_id
from loyalty_shared.topics import POINTS_EVENTS

SOURCE = contract.PointsEvent.SOURCE

MEMBER_ENROLLED = contract.MemberEnrolledV1.TYPE
ORDER_RECORDED = contract.OrderRecordedV1.TYPE
ORDER_REFUNDED = contract.OrderRefundedV1.TYPE
POINTS_EARNED = contract.PointsEarnedV1.TYPE
POINTS_MATURED = contract.PointsMaturedV1.TYPE
POINTS_REVERSED = contract.PointsReversedV1.TYPE
POINTS_REDEEMED = contract.PointsRedeemedV1.TYPE
REDEMPTION_CANCELLED = contract.RedemptionCancelledV1.TYPE
POINTS_EXPIRED = contract.PointsExpiredV1.TYPE
POINTS_ADJUSTED = contract.PointsAdjustedV1.TYPE
TIER_CHANGED = contract.TierChangedV1.TYPE
INTERACTION_RECORDED = contract.InteractionRecordedV1.TYPE
MEMBER_CHECKED_IN = contract.MemberCheckedInV1.TYPE
MEMBER_ERASED = contract.MemberErasedV1.TYPE

MODELS: dict[str, type[contract.PointsEvent]] = {m.TYPE: m for m in contract.PUBLISHED}


def points_event(
    type_: str, member_id: str, data: dict[str, Any], *, time: datetime | None = None
) -> CloudEvent:
    """The event of ``type_`` with ``data`` as its model writes it (refused if the model
    does not describe ``data`` exactly: a field it lacks, or one missing)."""
    return MODELS[type_].written(data).event(member_id, time=time)


_TIME = TypeAdapter(datetime)


def outbox_row(
    type_: str, member_id: str, data: dict[str, Any], *, time: datetime
) -> dict[str, Any]:
    """The outbox row of ``points_event(...)`` (as ``loyalty_shared.outbox.outbox_row`` makes
    it), built directly for the checkout's two events.

    The pydantic path validates ``data`` with the type's model and dumps it again, and the
    envelope validates the type (a constant here) and that the time carries an offset (the
    checkout's times are ``AwareDatetime``); here ``data`` is taken as given, written as the
    model would write it (fields in the model's order, money as decimal strings, times with
    ``isoformat()``), and the envelope's time through pydantic's own serialiser.
    ``tests/test_event_rows.py`` checks rows and bytes against the model path, for the
    checkout's real payloads.
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
    return contract.TierChangedV1.model_validate(
        {
            "member_id": member_id,
            "from_tier": from_tier,
            "to_tier": to_tier,
            "direction": direction,
            "reason": reason,
            "growth_value": growth_value,
            "occurred_at": at,
        }
    ).event(member_id, time=at)


async def publish(session: AsyncSession, *events: CloudEvent) -> None:
    """Enqueue the events, except those about an erased member (kept under a pseudonym:
    refunds and expiry still move its books, but no other service hears of it again)."""
    from points.db import outbox
    from points.privacy.service import is_pseudonym

    await enqueue(
        await session.connection(),
        outbox,
        POINTS_EVENTS,
        *(e for e in events if not is_pseudonym(e.subject)),
    )
