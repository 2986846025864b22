"""``GET /v1/members/{member_id}/export``: everything held about a member, a part per service.

The three services' own exports are asked in parallel, with the caller's identity:
points ``/v1/members/{id}/export`` (member record, balance, ledger, lots, redemptions...),
segmentation ``/v1/profiles/{id}/export`` (profile, orders, segments, contacts...) and
feedback ``/v1/feedback/members/{id}/export`` (complaints, follow-ups, survey answers...).

An export is all or nothing. It answers a data subject's request for everything held
about them, and a document with a part missing reads as "nothing held there". So a
service that does not answer (down, timeout, open circuit, an error) makes the whole
export a 503 problem naming that service, with ``Retry-After``; never a 200 with a part
left out or marked unavailable (the composite *status* degrades part by part because an
app needs something to show; an export has no such excuse). A part is ``null`` only
when its service says it holds nothing about the member (its 404). Points decides
whether the member exists: unknown or erased there is a 404, whatever the others say.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gateway.endpoints import MEMBER_CALL_RESPONSES, member_call, not_found
from gateway.proxy import with_headers
from gateway.upstream import UpstreamError, Upstreams
from loyalty_shared.problems import problem_response

router = APIRouter(tags=["privacy"])

# service -> its export of one member (the member id goes in, URL-quoted)
SOURCES = {
    "points": "/v1/members/{}/export",
    "segmentation": "/v1/profiles/{}/export",
    "feedback": "/v1/feedback/members/{}/export",
}


class MemberExportOut(BaseModel):
    member_id: str
    points: dict[str, Any] = Field(
        description="What the points service holds: its GET /v1/members/{member_id}/export"
    )
    segmentation: dict[str, Any] | None = Field(
        description="What segmentation holds (its GET /v1/profiles/{member_id}/export); "
        "null when it holds nothing about the member"
    )
    feedback: dict[str, Any] | None = Field(
        description="What feedback holds (its GET /v1/feedback/members/{member_id}/export); "
        "null when it holds nothing about the member"
    )


@dataclass(frozen=True, slots=True)
class Part:
    service: str
    doc: dict[str, Any] | None = None  # None: the service holds nothing (or did not answer)
    failure: str | None = None  # why the service gave no answer
    retry_after: int = 5


async def _fetch(
    upstreams: Upstreams, service: str, path: str, headers: list[tuple[bytes, bytes]]
) -> Part:
    try:
        response = await upstreams.request(service, "GET", path, headers=headers)
    except UpstreamError as exc:
        return Part(service, failure=exc.kind, retry_after=exc.retry_after)
    if response.status_code == 404:
        return Part(service)
    if response.status_code != 200:
        return Part(service, failure=f"HTTP {response.status_code}")
    try:
        doc = response.json()
    except ValueError:  # not JSON, or not UTF-8
        return Part(service, failure="invalid response")
    if not isinstance(doc, dict):
        return Part(service, failure="invalid response")
    return Part(service, doc)


def _incomplete(request: Request, failed: list[Part]) -> JSONResponse:
    names = ", ".join(f"{p.service} ({p.failure})" for p in failed)
    return problem_response(
        503,
        "Export unavailable",
        f"An export holds every service's part or none; no answer from: {names}. Retry shortly.",
        slug="export-incomplete",
        instance=request.url.path,
        services=[p.service for p in failed],
        headers={"Retry-After": str(max(p.retry_after for p in failed))},
    )


@router.get(
    "/v1/members/{member_id}/export",
    response_model=MemberExportOut,
    summary="Everything held about the member, one part per service (data subject export)",
    description="Points, segmentation and feedback are asked in parallel. All or nothing: "
    "if a service does not answer, the export is a 503 problem (`export-incomplete`, its "
    "`services` naming which, `Retry-After`), never a document with a part missing. A part "
    "is null when that service holds nothing about the member.",
    responses={
        **MEMBER_CALL_RESPONSES,
        404: {"description": "No such member (unknown or erased)"},
        503: {"description": "A service did not answer: the export would be incomplete"},
    },
)
async def export_member(
    request: Request, member_id: Annotated[str, Path(description="The shop's customer id")]
) -> Response:
    call = await member_call(request, member_id)
    if isinstance(call, Response):
        return call
    admitted, upstreams, headers, quoted = call.admitted, call.upstreams, call.headers, call.quoted
    parts = {
        part.service: part
        for part in await asyncio.gather(
            *(_fetch(upstreams, s, path.format(quoted), headers) for s, path in SOURCES.items())
        )
    }
    points = parts["points"]
    if points.failure is None and points.doc is None:
        return not_found(request, member_id, admitted)
    failed = [part for part in parts.values() if part.failure is not None]
    if failed or points.doc is None:
        return with_headers(_incomplete(request, failed), admitted.rate_headers)
    out = MemberExportOut(
        member_id=member_id,
        points=points.doc,
        segmentation=parts["segmentation"].doc,
        feedback=parts["feedback"].doc,
    )
    return with_headers(JSONResponse(out.model_dump(mode="json")), admitted.rate_headers)
