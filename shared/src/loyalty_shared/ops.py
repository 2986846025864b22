"""``/v1/ops/...`` on every service: pipeline health, and the dead letters and parked rows.

The gateway asks all three services and answers with one document (``GET
/v1/ops/pipeline``, ``GET /v1/ops/dead-letters``) or sends an action to the service that
holds the item (its ref starts with the service's name). Ops may read; replaying and
discarding is for admins (the gateway's policy table). The same actions are on each
service's command line: ``loyalty-<service> dead-letters list|show|replay|discard``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from pydantic import BaseModel, Field

from loyalty_shared import dead_letters
from loyalty_shared.db import Session
from loyalty_shared.kafka import make_producer
from loyalty_shared.pipeline import pipeline_status
from loyalty_shared.settings import CommonSettings
from loyalty_shared.topics import CONSUMED_BY

Ref = Annotated[
    str,
    Path(
        max_length=80,
        pattern=r"^[a-z]+\.(dlq|parked)\.[0-9]{1,18}$",
        description="<service>.<dlq|parked>.<n>, as listed",
        examples=["points.dlq.7"],
    ),
]
Operator = Annotated[
    str | None, Header(alias="X-Operator-Id", max_length=128, include_in_schema=False)
]


class DeadLetterItem(BaseModel):
    ref: str
    kind: Literal["dlq", "parked"]
    status: Literal["open", "replayed", "discarded"]
    topic: str
    key: str | None
    event_id: str | None
    event_type: str | None
    error: str
    error_type: str
    failed_at: datetime
    attempts: int | None = Field(description="tries before it was dead-lettered (dlq)")
    consumer_group: str | None
    headers: dict[str, Any]
    payload: Any = Field(default=None, description="the event (on GET of one item)")


class DeadLetterList(BaseModel):
    service: str
    items: list[DeadLetterItem]


class ReplayIn(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


class DiscardIn(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="kept in the audit table")


class ReplayAllIn(BaseModel):
    kind: Literal["dlq", "parked"] | None = None
    reason: str | None = Field(default=None, max_length=1000)


class Resolved(BaseModel):
    ref: str
    status: Literal["replayed", "discarded"]


class ReplayedAll(BaseModel):
    service: str
    replayed: list[str]


async def replay_item(
    settings: CommonSettings,
    session: dead_letters.Executor,
    ref: str,
    *,
    actor: str,
    reason: str | None,
) -> None:
    """Mark it replayed and send it, in that order inside the caller's transaction: a send
    that fails leaves it open (and a send whose commit failed is harmless: consumers are
    idempotent)."""
    record = await dead_letters.replay(
        session, settings.service_name, ref, actor=actor, reason=reason
    )
    if record is not None:
        await _send(settings, [record])


async def _send(settings: CommonSettings, records: list[dead_letters.Replay]) -> None:
    producer = make_producer(settings, client_id=f"{settings.service_name}-replay")
    await producer.start()
    try:
        for r in records:
            await producer.send_and_wait(r.topic, r.value, key=r.key, headers=r.headers)
    finally:
        await producer.stop()


async def replay_all(
    settings: CommonSettings,
    session: dead_letters.Executor,
    *,
    kind: dead_letters.Kind | None,
    actor: str,
    reason: str | None,
) -> list[str]:
    """Every open item (of ``kind``) marked replayed and sent, in the caller's transaction."""
    refs = await dead_letters.open_refs(session, settings.service_name, kind)
    records = [
        r
        for ref in refs
        if (
            r := await dead_letters.replay(
                session, settings.service_name, ref, actor=actor, reason=reason
            )
        )
        is not None
    ]
    if records:
        await _send(settings, records)
    return refs


def _item(item: dead_letters.Item, with_payload: bool = False) -> DeadLetterItem:
    return DeadLetterItem.model_validate(item.as_dict(with_payload=with_payload))


def ops_router() -> APIRouter:
    router = APIRouter(prefix="/v1/ops", tags=["ops"])

    @router.get(
        "/pipeline", summary="Outbox backlog, parked rows, consumer lag, dead letters, jobs"
    )
    async def pipeline(request: Request) -> dict[str, Any]:
        settings, engine = request.app.state.settings, request.app.state.engine
        consumes = CONSUMED_BY.get(settings.service_name, ())
        return await pipeline_status(
            settings,
            engine,
            consumer_group=settings.service_name if consumes else None,
            consumes=consumes,
        )

    @router.get("/dead-letters", summary="Dead letters and parked outbox rows, newest first")
    async def list_dead_letters(
        request: Request,
        session: Session,
        status: Literal["open", "replayed", "discarded", "all"] = "open",
        kind: Literal["dlq", "parked"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> DeadLetterList:
        settings = request.app.state.settings
        items = await dead_letters.list_items(
            session, settings.service_name, status=status, kind=kind, limit=limit
        )
        return DeadLetterList(service=settings.service_name, items=[_item(i) for i in items])

    @router.post("/dead-letters/replay", summary="Replay every open item (or every one of a kind)")
    async def replay_everything(
        request: Request, session: Session, body: ReplayAllIn, operator: Operator = None
    ) -> ReplayedAll:
        settings = request.app.state.settings
        refs = await replay_all(
            settings, session, kind=body.kind, actor=operator or "unknown", reason=body.reason
        )
        return ReplayedAll(service=settings.service_name, replayed=refs)

    @router.get("/dead-letters/{ref}", summary="One dead letter or parked row, with its event")
    async def show_dead_letter(request: Request, session: Session, ref: Ref) -> DeadLetterItem:
        service = request.app.state.settings.service_name
        return _item(await dead_letters.get_item(session, service, ref), True)

    @router.post(
        "/dead-letters/{ref}/replay",
        summary="Send it again (idempotent by event id: a replay never doubles an effect)",
        responses={409: {"description": "already replayed or discarded"}},
    )
    async def replay_dead_letter(
        request: Request,
        session: Session,
        ref: Ref,
        body: ReplayIn | None = None,
        operator: Operator = None,
    ) -> Resolved:
        settings = request.app.state.settings
        reason = body.reason if body else None
        await replay_item(settings, session, ref, actor=operator or "unknown", reason=reason)
        return Resolved(ref=ref, status="replayed")

    @router.post(
        "/dead-letters/{ref}/discard",
        summary="Give it up, with a reason kept in the audit table",
        responses={409: {"description": "already replayed or discarded"}},
    )
    async def discard_dead_letter(
        request: Request, session: Session, ref: Ref, body: DiscardIn, operator: Operator = None
    ) -> Resolved:
        service = request.app.state.settings.service_name
        await dead_letters.discard(
            session, service, ref, actor=operator or "unknown", reason=body.reason
        )
        return Resolved(ref=ref, status="discarded")

    return router
