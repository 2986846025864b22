"""Event types the segmentation service publishes: the payload models are its contract
(``loyalty_shared.contracts.segmentation``, where consumers read them too; docs/events.md).

The events are written set-based, in SQL (the live refresh, the batch refresh, the
recompute's score changes): ``publish_rows`` takes a select whose columns are exactly the
model's fields and builds each payload with the model's field names, so SQL cannot write a
shape the model does not describe.
"""

import json
from typing import Any

from sqlalchemy import Text, cast, func, insert, literal, literal_column, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.contracts import segmentation as contract
from loyalty_shared.events import CloudEvent
from loyalty_shared.outbox import enqueue
from loyalty_shared.topics import SEGMENTATION_EVENTS

SOURCE = contract.SegmentationEvent.SOURCE

SEGMENT_ENTERED = contract.SegmentEnteredV1.TYPE
SEGMENT_LEFT = contract.SegmentLeftV1.TYPE
VALUE_TIER_CHANGED = contract.ValueTierChangedV1.TYPE
LIFECYCLE_CHANGED = contract.LifecycleChangedV1.TYPE
CHURN_RISK_CHANGED = contract.ChurnRiskChangedV1.TYPE


async def publish(session: AsyncSession, *events: CloudEvent) -> None:
    from segmentation.db import outbox

    await enqueue(session, outbox, SEGMENTATION_EVENTS, *events)


# The statement's event ids: one UUIDv7 from Postgres per statement (time-ordered, as
# loyalty_shared.ids: a recompute's million events go to the right edge of the outbox's
# event_id index), the row's number added to its last 39 random bits (RFC 9562 6.2: a
# monotonic random counter in rand_b; below 2^39 rows it never carries out of the last 10
# hex digits): unique and increasing within the statement, random across statements,
# without a uuidv7() per row, which reads /dev/urandom (this Postgres has no OpenSSL
# random source: an open, a read and a close per id, about a sixth of the statement).
_EVENT_ID = (
    "left(base.base, 26) || lpad(to_hex((CAST(CAST('x' || right(base.base, 10) AS bit(40))"
    " AS bigint) & 549755813887) + row_number() OVER ()), 10, '0')"
)


async def publish_rows(
    session: AsyncSession, model: type[contract.SegmentationEvent], rows: Any
) -> int:
    """Set-based publish: one ``model`` event per row of ``rows``, keyed by its member_id.

    ``rows`` (a select) has exactly the model's fields as columns (money as text, times as
    timestamptz); the envelope is built in SQL as ``CloudEvent.model_dump(mode="json")``
    would build it.
    """
    from segmentation.db import outbox

    src = rows.subquery("src")
    fields = model.fields()
    if set(src.c.keys()) != set(fields):
        raise ValueError(f"{model.__name__} has {sorted(fields)}, the rows {sorted(src.c.keys())}")
    data = func.jsonb_build_object(*(x for f in fields for x in (literal(f), src.c[f])))
    base = select(cast(func.uuidv7(), Text).label("base")).subquery("base")
    numbered = select(
        src.c.member_id,
        data.label("data"),
        literal_column(_EVENT_ID).label("eid"),
        func.now().label("at"),
    )
    with_id = numbered.select_from(src.join(base, true())).subquery("with_id")
    payload = func.jsonb_build_object(
        "specversion",
        "1.0",
        "id",
        with_id.c.eid,
        "source",
        SOURCE,
        "type",
        model.TYPE,
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
            literal(model.TYPE),
            payload,
            # a constant, not a jsonb_build_object for every row (~1 µs of CPU a row)
            cast(literal(json.dumps({"ce_type": model.TYPE})), JSONB),
        ),
    )
    result = await session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)
