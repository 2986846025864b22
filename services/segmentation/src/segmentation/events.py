"""Event types the segmentation service publishes (payloads documented in docs/segmentation.md)."""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import CloudEvent, make_event
from loyalty_shared.outbox import enqueue
from loyalty_shared.topics import SEGMENTATION_EVENTS

SOURCE = "loyalty/segmentation"

SEGMENT_ENTERED = "loyalty.segment.entered.v1"
SEGMENT_LEFT = "loyalty.segment.left.v1"
LIFECYCLE_CHANGED = "loyalty.profile.lifecycle_changed.v1"


def segmentation_event(
    type_: str, member_id: str, data: dict[str, Any], *, time: datetime | None = None
) -> CloudEvent:
    return make_event(SOURCE, type_, member_id, data, time=time)


async def publish(session: AsyncSession, *events: CloudEvent) -> None:
    from segmentation.db import outbox

    await enqueue(session, outbox, SEGMENTATION_EVENTS, *events)


async def publish_from_select(session: AsyncSession, type_: str, rows: Any) -> int:
    """Set-based publish: one outbox row per row of ``rows`` (a select of member_id, data jsonb).

    The envelope is built in SQL exactly as CloudEvent.model_dump(mode="json") would.
    """
    from sqlalchemy import Text, cast, func, insert, literal, select

    from segmentation.db import outbox

    src = rows.subquery("src")
    with_id = select(
        src.c.member_id,
        src.c.data,
        cast(func.gen_random_uuid(), Text).label("eid"),
        func.now().label("at"),
    ).subquery("with_id")
    payload = func.jsonb_build_object(
        "specversion",
        "1.0",
        "id",
        with_id.c.eid,
        "source",
        SOURCE,
        "type",
        type_,
        "time",
        func.to_jsonb(with_id.c.at),
        "subject",
        with_id.c.member_id,
        "datacontenttype",
        "application/json",
        "data",
        with_id.c.data,
    )
    stmt = insert(outbox).from_select(
        ["event_id", "topic", "key", "event_type", "payload", "headers"],
        select(
            with_id.c.eid,
            literal(SEGMENTATION_EVENTS),
            with_id.c.member_id,
            literal(type_),
            payload,
            func.jsonb_build_object("ce_type", type_),
        ),
    )
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)
