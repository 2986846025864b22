"""``/v1/ops/...`` over every service: one pipeline report, one dead-letter list.

Each service answers for itself (``loyalty_shared.ops``); the gateway asks the three in
parallel and puts the answers side by side. A service that does not answer is named
with the reason, never left out in silence: a stalled stream must be one look away
even when the stall is a service that is down. An action on one item (show, replay,
discard) goes through the ordinary proxy to the service its ref names
(``points.dlq.7``: see ``gateway.routing``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from gateway.endpoints import admit
from gateway.guard import Admitted
from gateway.proxy import forward_headers, with_headers
from gateway.routing import SERVICES
from gateway.upstream import UpstreamError, Upstreams

router = APIRouter(tags=["ops"])

Service = Literal["points", "segmentation", "feedback", "webhooks"]


class Unavailable(BaseModel):
    status: Literal["unavailable"] = "unavailable"
    reason: str


class PipelineOut(BaseModel):
    services: dict[str, dict[str, Any]] = Field(
        description="Each service's own report (outbox, parked, dead_letters, consumer, jobs), "
        "or {status: unavailable, reason}"
    )
    totals: dict[str, int] = Field(
        description="outbox backlog, parked rows, dead letters and consumer lag, summed over "
        "the services that answered"
    )


class DeadLettersOut(BaseModel):
    items: list[dict[str, Any]] = Field(description="newest first, each with its service")
    unavailable: dict[str, str] = Field(description="services that did not answer, and why")


class ReplayAllIn(BaseModel):
    service: Service | None = Field(default=None, description="only this service's items")
    kind: Literal["dlq", "parked"] | None = None
    reason: str | None = Field(default=None, max_length=1000)


async def _ask(
    request: Request,
    headers: list[tuple[bytes, bytes]],
    service: str,
    method: str,
    path: str,
    body: bytes = b"",
) -> dict[str, Any] | Unavailable:
    upstreams: Upstreams = request.app.state.upstreams
    try:
        response = await upstreams.request(service, method, path, headers=headers, content=body)
    except UpstreamError as exc:
        return Unavailable(reason=exc.kind)
    if response.status_code != 200:
        return Unavailable(reason=f"HTTP {response.status_code}")
    try:
        doc = response.json()
    except ValueError:
        return Unavailable(reason="invalid response")
    return doc if isinstance(doc, dict) else Unavailable(reason="invalid response")


async def _ask_all(
    request: Request,
    admitted: Admitted,
    method: str,
    path: str,
    services: tuple[str, ...],
    body: bytes = b"",
) -> dict[str, dict[str, Any] | Unavailable]:
    headers = [(k, v) for k, v in forward_headers(request, admitted) if k != b"content-length"]
    answers = await asyncio.gather(
        *(_ask(request, headers, s, method, path, body) for s in services)
    )
    return dict(zip(services, answers, strict=True))


def _total(reports: dict[str, dict[str, Any]], *path: str) -> int:
    total = 0
    for report in reports.values():
        node: Any = report
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        total += node if isinstance(node, int) else 0
    return total


@router.get(
    "/v1/ops/pipeline",
    response_model=PipelineOut,
    summary="Every service's outbox backlog, parked rows, consumer lag, dead letters and jobs",
)
async def pipeline(request: Request) -> Response:
    admitted = await admit(request)
    if isinstance(admitted, Response):
        return admitted
    answers = await _ask_all(request, admitted, "GET", "/v1/ops/pipeline", SERVICES)
    reports = {s: a for s, a in answers.items() if isinstance(a, dict)}
    out = PipelineOut(
        services={s: a if isinstance(a, dict) else a.model_dump() for s, a in answers.items()},
        totals={
            "outbox_backlog": _total(reports, "outbox", "backlog"),
            "parked": _total(reports, "outbox", "parked"),
            "dead_letters": _total(reports, "dead_letters"),
            "consumer_lag": _total(reports, "consumer", "lag"),
        },
    )
    return with_headers(JSONResponse(out.model_dump(mode="json")), admitted.rate_headers)


@router.get(
    "/v1/ops/dead-letters",
    response_model=DeadLettersOut,
    summary="Dead letters and parked outbox rows of every service, newest first",
)
async def dead_letters(
    request: Request,
    status: Literal["open", "replayed", "discarded", "all"] = "open",
    kind: Literal["dlq", "parked"] | None = None,
    service: Service | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    admitted = await admit(request)
    if isinstance(admitted, Response):
        return admitted
    query = {"status": status, "limit": limit, **({"kind": kind} if kind else {})}
    services = (service,) if service else SERVICES
    path = f"/v1/ops/dead-letters?{urlencode(query)}"
    answers = await _ask_all(request, admitted, "GET", path, services)
    items: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    for name, answer in answers.items():
        if isinstance(answer, Unavailable):
            unavailable[name] = answer.reason
            continue
        items += [{**item, "service": name} for item in answer.get("items", [])]
    items.sort(key=lambda i: str(i.get("failed_at", "")), reverse=True)
    out = DeadLettersOut(items=items[:limit], unavailable=unavailable)
    return with_headers(JSONResponse(out.model_dump(mode="json")), admitted.rate_headers)


@router.post(
    "/v1/ops/dead-letters/replay",
    summary="Replay every open item (of one service, of one kind); idempotent by event id",
    # The body is read after the caller is admitted (401 before 422), so it is declared here.
    responses={422: {"description": "The body is not a ReplayAllIn (the field is named)"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ReplayAllIn.model_json_schema()}},
        }
    },
)
async def replay_all(request: Request) -> Response:
    admitted = await admit(request)
    if isinstance(admitted, Response):
        return admitted
    try:
        body = ReplayAllIn.model_validate_json(admitted.body or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        ) from exc
    services = (body.service,) if body.service else SERVICES
    payload = body.model_dump_json(exclude={"service"}).encode()
    path = "/v1/ops/dead-letters/replay"
    answers = await _ask_all(request, admitted, "POST", path, services, payload)
    out = {
        "replayed": {s: a.get("replayed", []) for s, a in answers.items() if isinstance(a, dict)},
        "unavailable": {s: a.reason for s, a in answers.items() if isinstance(a, Unavailable)},
    }
    return with_headers(JSONResponse(out), admitted.rate_headers)
