"""The complaint queue (``GET /v1/complaints``) sorted by the next deadline, one complaint
with its history, and the actions its state allows (``allowed_actions``: no other is
offered). Each action form carries an ``Idempotency-Key`` made when the page was drawn, so
a double submit acts once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from gateway.console.web import ApiResult, checked_form, idempotency, signed_in

router = APIRouter()

StatusFilter = Literal["", "open", "acknowledged", "in_progress", "escalated", "resolved", "closed"]
ChannelFilter = Literal["", "phone", "online_chat", "email", "app", "web", "store", "social"]
STATUSES = get_args(StatusFilter)[1:]
CHANNELS = get_args(ChannelFilter)[1:]
ComplaintId = Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$")]
QUEUE_LIMIT = 200
_FAR = datetime.max.replace(tzinfo=UTC)


def next_due(complaint: dict[str, Any]) -> datetime | None:
    """The running clock's deadline: first response until answered, then resolution;
    None once resolved or closed."""
    if complaint.get("status") in ("resolved", "closed"):
        return None
    clocks = complaint.get("sla") or {}
    for name in ("first_response", "resolution"):
        clock = clocks.get(name) or {}
        if clock.get("running") and clock.get("due_at"):
            return datetime.fromisoformat(clock["due_at"])
    if not complaint.get("first_responded_at"):
        return datetime.fromisoformat(complaint["first_response_due_at"])
    return datetime.fromisoformat(complaint["resolution_due_at"])


def queue(items: list[dict[str, Any]], channel: str | None, sort: str) -> list[dict[str, Any]]:
    rows = [{**c, "next_due": next_due(c)} for c in items if not channel or c["channel"] == channel]
    if sort == "deadline":
        rows.sort(key=lambda c: c["next_due"] or _FAR)
    return rows


@router.get("/console/complaints")
async def complaint_queue(
    request: Request,
    status: StatusFilter = "",
    owner: Annotated[str, Query(max_length=128)] = "",
    channel: ChannelFilter = "",
    breached: Literal["", "true", "false"] = "",
    sort: Literal["deadline", "newest"] = "deadline",
) -> Response:
    async with signed_in(request) as page:
        params: dict[str, Any] = {"limit": QUEUE_LIMIT}
        for name, value in (("status", status), ("owner", owner), ("breached", breached)):
            if value:
                params[name] = value
        result = await page.api.get("/v1/complaints", params)
        items = result.body["items"] if result.ok else []
        return page.render(
            "complaints.html",
            problem=None if result.ok else result.problem,
            rows=queue(items, channel or None, sort),
            more=bool(result.ok and result.body.get("next_cursor")),
            filters={
                "status": status,
                "owner": owner,
                "channel": channel,
                "breached": breached,
                "sort": sort,
            },
            statuses=STATUSES,
            channels=CHANNELS,
        )


async def _detail(request: Request, complaint_id: str, outcome: ApiResult | None) -> Response:
    async with signed_in(request) as page:
        result = await page.api.get(f"/v1/complaints/{complaint_id}")
        if not result.ok:
            return page.render(
                "complaint.html", status=result.status, complaint=None, problem=result.problem
            )
        complaint = {**result.body, "next_due": next_due(result.body)}
        return page.render(
            "complaint.html",
            status=200 if outcome is None or outcome.ok else outcome.status,
            complaint=complaint,
            problem=None if outcome is None or outcome.ok else outcome.problem,
            idempotency_key=uuid.uuid4().hex,
        )


@router.get("/console/complaints/{complaint_id}")
async def complaint(request: Request, complaint_id: ComplaintId) -> Response:
    return await _detail(request, complaint_id, None)


@router.post("/console/complaints/{complaint_id}/actions")
async def act(request: Request, complaint_id: ComplaintId) -> Response:
    async with signed_in(request) as page:
        form = await checked_form(request, page.session)
        body: dict[str, Any] = {"action": form.get("action", "")}
        for field in ("note", "to", "cause", "severity"):
            if form.get(field, "").strip():
                body[field] = form[field].strip()
        outcome = await page.api.call(
            "POST",
            f"/v1/complaints/{complaint_id}/actions",
            json_body=body,
            headers=idempotency(form),
        )
    if outcome.ok:
        return RedirectResponse(f"/console/complaints/{complaint_id}", status_code=303)
    return await _detail(request, complaint_id, outcome)
