"""Dead letters and parked outbox rows: kept, counted, listed, replayed or discarded.

Two kinds of event that the pipeline could not deliver, one work list:

- **dead letters** (``dlq``): a record a consumer of this service gave up on because of
  its own content. The consumer keeps it in ``dead_letters`` (with the error) and also
  sends it to ``<topic>.dlq`` for outside tools. *Replay* sends the original record back
  to its source topic; every consumer's inbox is idempotent on the event id, so a replay
  never doubles an effect (a group that had applied it ignores it).
- **parked rows** (``parked``): an outbox row the broker refused for good (too large, an
  invalid topic): the relay moved it to ``outbox_parked`` and went on with the next row.
  *Replay* puts it back in the outbox (after, say, raising the broker's size limit).

Every replay and discard is written to ``pipeline_actions`` with who did it and why; a
discard needs a reason. Items are addressed as ``<service>.<kind>.<n>`` (``points.dlq.7``)
so that the gateway can send an action to the service that holds the item.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from aiokafka.structs import ConsumerRecord
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loyalty_shared.problems import Conflict, NotFound, Unprocessable

# what the functions run their statements on: a request's or a job's session, or a connection
Executor = AsyncConnection | AsyncSession
Kind = Literal["dlq", "parked"]
Status = Literal["open", "replayed", "discarded"]
KINDS: tuple[Kind, ...] = ("dlq", "parked")


def dead_letter_tables(metadata: MetaData) -> tuple[Table, Table, Table]:
    """``dead_letters``, ``outbox_parked`` and ``pipeline_actions`` on a service's metadata."""
    dead = Table(
        "dead_letters",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("consumer_group", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("kafka_partition", Integer, nullable=False),
        Column("kafka_offset", BigInteger, nullable=False),
        Column("key", Text, nullable=True),
        Column("value", LargeBinary, nullable=True),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("event_id", Text, nullable=True),
        Column("event_type", Text, nullable=True),
        Column("error", Text, nullable=False),
        Column("error_type", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("status", Text, nullable=False, server_default=text("'open'")),
        Column("resolved_at", DateTime(timezone=True), nullable=True),
        UniqueConstraint("consumer_group", "topic", "kafka_partition", "kafka_offset"),
        Index("ix_dead_letters_status", "status", "id"),
        Index("ix_dead_letters_key", "key"),
    )
    parked = Table(
        "outbox_parked",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("outbox_id", BigInteger, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("event_type", Text, nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("error", Text, nullable=False),
        Column("error_type", Text, nullable=False),
        Column("status", Text, nullable=False, server_default=text("'open'")),
        Column("resolved_at", DateTime(timezone=True), nullable=True),
        Index("ix_outbox_parked_status", "status", "id"),
        Index("ix_outbox_parked_key", "key"),
    )
    actions = Table(
        "pipeline_actions",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("item_kind", Text, nullable=False),
        Column("item_id", BigInteger, nullable=False),
        Column("event_id", Text, nullable=True),
        Column("action", Text, nullable=False),
        Column("actor", Text, nullable=False),
        Column("reason", Text, nullable=True),
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index("ix_pipeline_actions_item", "item_kind", "item_id"),
    )
    return dead, parked, actions


# -- addressing ----------------------------------------------------------------------------


def item_ref(service: str, kind: Kind, number: int) -> str:
    return f"{service}.{kind}.{number}"


def parse_ref(service: str, ref: str) -> tuple[Kind, int]:
    """``points.dlq.7`` -> ("dlq", 7) for the service that holds it; 404 otherwise."""
    parts = ref.split(".")
    if len(parts) != 3 or parts[0] != service or parts[1] not in KINDS or not parts[2].isdigit():
        raise NotFound(f"No dead letter or parked event {ref!r} in the {service} service")
    kind: Kind = "dlq" if parts[1] == "dlq" else "parked"
    return kind, int(parts[2])


# -- recording (the consumer, the relay) ----------------------------------------------------


def _decoded_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}


async def record_dead_letter(
    conn: Executor,
    *,
    group: str,
    record: ConsumerRecord[Any, Any],
    event_id: str | None,
    event_type: str | None,
    error: str,
    error_type: str,
    attempts: int,
) -> None:
    """Keep the record (once per group and offset: a retried dead-lettering is one row)."""
    await conn.execute(
        text(
            "INSERT INTO dead_letters (consumer_group, topic, kafka_partition, kafka_offset, key, "
            "value, "
            "headers, event_id, event_type, error, error_type, attempts) VALUES (:g, :t, :p, :o, "
            ":k, :v, CAST(:h AS jsonb), :eid, :etype, :err, :errtype, :n) "
            "ON CONFLICT (consumer_group, topic, kafka_partition, kafka_offset) DO NOTHING"
        ),
        {
            "g": group,
            "t": record.topic,
            "p": record.partition,
            "o": record.offset,
            "k": record.key.decode("utf-8", "replace") if record.key is not None else None,
            "v": record.value,
            "h": orjson.dumps(_decoded_headers(record)).decode(),
            "eid": event_id,
            "etype": event_type,
            "err": error,
            "errtype": error_type,
            "n": attempts,
        },
    )


PARK_SQL = text(
    "WITH moved AS (DELETE FROM outbox WHERE id = :id RETURNING *) "
    "INSERT INTO outbox_parked (outbox_id, event_id, topic, key, event_type, payload, headers, "
    "created_at, error, error_type) SELECT id, event_id, topic, key, event_type, payload, "
    "headers, created_at, :err, :errtype FROM moved"
)


# -- the work list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One dead letter or parked row, as the ops routes and the CLI show it."""

    ref: str
    kind: Kind
    status: str
    topic: str
    key: str | None
    event_id: str | None
    event_type: str | None
    error: str
    error_type: str
    failed_at: datetime
    attempts: int | None
    consumer_group: str | None
    headers: dict[str, Any]
    payload: Any = None

    def as_dict(self, *, with_payload: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "payload"}
        if with_payload:
            out["payload"] = self.payload
        return out


_DLQ_COLUMNS = (
    "id, status, topic, key, event_id, event_type, error, error_type, failed_at, attempts, "
    "consumer_group, headers"
)
_PARKED_COLUMNS = (
    "id, status, topic, key, event_id, event_type, error, error_type, parked_at AS failed_at, "
    "NULL::int AS attempts, NULL::text AS consumer_group, headers"
)


def _payload_of_value(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"base64": base64.b64encode(value).decode()}


def _item(service: str, kind: Kind, row: Any, payload: Any = None) -> Item:
    return Item(
        ref=item_ref(service, kind, row.id),
        kind=kind,
        status=row.status,
        topic=row.topic,
        key=row.key,
        event_id=row.event_id,
        event_type=row.event_type,
        error=row.error,
        error_type=row.error_type,
        failed_at=row.failed_at,
        attempts=row.attempts,
        consumer_group=row.consumer_group,
        headers=dict(row.headers or {}),
        payload=payload,
    )


async def list_items(
    conn: Executor,
    service: str,
    *,
    status: Status | Literal["all"] = "open",
    kind: Kind | None = None,
    limit: int = 100,
) -> list[Item]:
    """The newest first, both kinds unless ``kind`` says which."""
    where = "" if status == "all" else "WHERE status = :status"
    items: list[Item] = []
    sources: list[tuple[Kind, str, str]] = [
        ("dlq", "dead_letters", _DLQ_COLUMNS),
        ("parked", "outbox_parked", _PARKED_COLUMNS),
    ]
    for item_kind, table, columns in sources:
        if kind is not None and kind != item_kind:
            continue
        rows = await conn.execute(
            text(f"SELECT {columns} FROM {table} {where} ORDER BY id DESC LIMIT :n"),
            {"status": status, "n": limit},
        )
        items += [_item(service, item_kind, r) for r in rows]
    items.sort(key=lambda i: i.failed_at, reverse=True)
    return items[:limit]


async def get_item(conn: Executor, service: str, ref: str) -> Item:
    kind, number = parse_ref(service, ref)
    if kind == "dlq":
        row = (
            await conn.execute(
                text(f"SELECT {_DLQ_COLUMNS}, value FROM dead_letters WHERE id = :id"),
                {"id": number},
            )
        ).first()
        payload = _payload_of_value(row.value) if row is not None else None
    else:
        row = (
            await conn.execute(
                text(f"SELECT {_PARKED_COLUMNS}, payload FROM outbox_parked WHERE id = :id"),
                {"id": number},
            )
        ).first()
        payload = row.payload if row is not None else None
    if row is None:
        raise NotFound(f"No dead letter or parked event {ref!r} in the {service} service")
    return _item(service, kind, row, payload)


async def counts(conn: Executor) -> dict[str, int]:
    """Open items of each kind."""
    row = (
        await conn.execute(
            text(
                "SELECT (SELECT count(*) FROM dead_letters WHERE status = 'open') AS dlq, "
                "(SELECT count(*) FROM outbox_parked WHERE status = 'open') AS parked"
            )
        )
    ).one()
    return {"dead_letters": int(row.dlq), "parked": int(row.parked)}


class AlreadyResolved(Conflict):
    slug = "already-resolved"
    title = "This item was already replayed or discarded"


class ReasonRequired(Unprocessable):
    slug = "reason-required"
    title = "A discard needs a reason"


async def _resolve(
    conn: Executor, kind: Kind, number: int, status: Status, actor: str, reason: str | None
) -> Any:
    """Mark an open item resolved (or 409); returns its row with what a replay needs."""
    table, extra = ("dead_letters", "value") if kind == "dlq" else ("outbox_parked", "payload")
    row = (
        await conn.execute(
            text(
                f"UPDATE {table} SET status = :status, resolved_at = now() "
                f"WHERE id = :id AND status = 'open' RETURNING id, topic, key, event_id, "
                f"event_type, headers, {extra}"
                + (", outbox_id, created_at" if kind == "parked" else "")
            ),
            {"status": status, "id": number},
        )
    ).first()
    if row is None:
        exists = await conn.scalar(
            text(f"SELECT status FROM {table} WHERE id = :id"), {"id": number}
        )
        if exists is None:
            raise NotFound(f"No {kind} item {number}")
        raise AlreadyResolved(f"This item is already {exists}", status=exists)
    await conn.execute(
        text(
            "INSERT INTO pipeline_actions (item_kind, item_id, event_id, action, actor, reason) "
            "VALUES (:kind, :id, :eid, :action, :actor, :reason)"
        ),
        {
            "kind": kind,
            "id": number,
            "eid": row.event_id,
            "action": "replay" if status == "replayed" else "discard",
            "actor": actor,
            "reason": reason,
        },
    )
    return row


async def discard(conn: Executor, service: str, ref: str, *, actor: str, reason: str) -> None:
    if not reason.strip():
        raise ReasonRequired(
            "Say why the item is discarded",
            errors=[{"field": "body.reason", "message": "must not be empty", "type": "missing"}],
        )
    kind, number = parse_ref(service, ref)
    await _resolve(conn, kind, number, "discarded", actor, reason)


# Headers the consumer added when it dead-lettered a record: not sent again on a replay.
_DLQ_HEADER_PREFIX = "dlq-"


@dataclass(frozen=True)
class Replay:
    """A record to send back to its source topic (after the database commit)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


async def replay(
    conn: Executor, service: str, ref: str, *, actor: str, reason: str | None
) -> Replay | None:
    """Mark the item replayed; a parked row goes back into the outbox at once (the relay
    sends it), a dead letter comes back as a ``Replay`` for the caller to produce."""
    kind, number = parse_ref(service, ref)
    row = await _resolve(conn, kind, number, "replayed", actor, reason)
    if kind == "parked":
        await conn.execute(
            text(
                "INSERT INTO outbox (event_id, topic, key, event_type, payload, headers) "
                "VALUES (:eid, :topic, :key, :etype, CAST(:payload AS jsonb), "
                "CAST(:headers AS jsonb)) ON CONFLICT (event_id) DO NOTHING"
            ),
            {
                "eid": row.event_id,
                "topic": row.topic,
                "key": row.key,
                "etype": row.event_type,
                "payload": orjson.dumps(row.payload).decode(),
                "headers": orjson.dumps(row.headers).decode(),
            },
        )
        return None
    headers = [
        (k, str(v).encode())
        for k, v in (row.headers or {}).items()
        if not k.startswith(_DLQ_HEADER_PREFIX)
    ]
    headers.append(("x-replayed-from", ref.encode()))
    return Replay(
        topic=row.topic,
        key=row.key.encode() if row.key is not None else None,
        value=row.value,
        headers=headers,
    )


async def open_refs(conn: Executor, service: str, kind: Kind | None = None) -> list[str]:
    """Every open item (for "replay all"), oldest first."""
    refs: list[str] = []
    for item_kind, table in (("dlq", "dead_letters"), ("parked", "outbox_parked")):
        if kind is not None and kind != item_kind:
            continue
        rows = await conn.execute(text(f"SELECT id FROM {table} WHERE status = 'open' ORDER BY id"))
        refs += [item_ref(service, item_kind, r.id) for r in rows]  # type: ignore[arg-type]
    return refs
