"""Segments and tags: the lists (size, refresh mode, last computed), create and edit with
the condition language (a 422 shows its message and position under the field, a caret
under the character), a segment's members and definitions, and "why is this member in this
segment" (``GET /v1/segments/{id}/explain/{member_id}``)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from gateway.console.web import (
    ApiResult,
    MemberId,
    Page,
    checked_form,
    field_errors,
    idempotency,
    signed_in,
)

router = APIRouter()

SegmentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
TagName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
FIELDS = ("name", "condition", "description")


def pointer(condition: str, position: int) -> dict[str, Any]:
    """The line of ``condition`` holding ``position`` (0-based) and a caret under it."""
    position = max(0, min(position, len(condition)))
    start = condition.rfind("\n", 0, position) + 1
    end = condition.find("\n", position)
    line = condition[start : end if end >= 0 else len(condition)]
    column = position - start
    return {
        "line": line,
        "caret": " " * column + "^",
        "line_number": condition.count("\n", 0, position) + 1,
        "column": column + 1,
    }


def problems(outcome: ApiResult | None, condition: str) -> dict[str, Any]:
    """What a failed write shows: the detail, errors per field, the condition's caret."""
    if outcome is None or outcome.ok:
        return {"problem": None, "errors": {}, "pointer": None}
    errors = field_errors(outcome)
    position = outcome.body.get("position") if isinstance(outcome.body, dict) else None
    if isinstance(position, int):
        errors.setdefault("condition", [{"message": outcome.problem, "position": position}])
    return {
        "problem": outcome.problem,
        "errors": errors,
        "pointer": pointer(condition, position) if isinstance(position, int) else None,
    }


def _body(form: dict[str, str], fields: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in fields:
        value = form.get(name, "").strip()
        if name == "description":
            body[name] = value or None
        elif value or name in ("name", "condition"):
            body[name] = value
    return body


def _edit_page(
    page: Page,
    template: str,
    current: dict[str, Any],
    history: ApiResult,
    form: dict[str, str] | None,
    outcome: ApiResult | None,
    **context: Any,
) -> Response:
    """A segment's or tag's page: its definitions and the edit form (as posted, with what
    was wrong, after a failed write)."""
    shown = form if form is not None else {k: current.get(k) or "" for k in FIELDS}
    return page.render(
        template,
        status=outcome.status if outcome is not None and not outcome.ok else 200,
        problem=None,
        history=history.body.get("items", []) if history.ok else [],
        form=shown,
        failed=problems(outcome, shown.get("condition", "")),
        idempotency_key=uuid.uuid4().hex,
        **context,
    )


async def _lists(page: Page, form: dict[str, str], outcome: ApiResult | None) -> Response:
    segments, tags = await asyncio.gather(page.api.get("/v1/segments"), page.api.get("/v1/tags"))
    kind = form.get("form")
    return page.render(
        "segments.html",
        status=outcome.status if outcome is not None and not outcome.ok else 200,
        segments=segments.body.get("items", []) if segments.ok else [],
        tags=tags.body if tags.ok and isinstance(tags.body, list) else [],
        lists_problem=None
        if segments.ok and tags.ok
        else (segments if not segments.ok else tags).problem,
        segment_form=form if kind == "segment" else {},
        tag_form=form if kind == "tag" else {},
        segment_failed=problems(outcome if kind == "segment" else None, form.get("condition", "")),
        tag_failed=problems(outcome if kind == "tag" else None, form.get("condition", "")),
        idempotency_key=uuid.uuid4().hex,
    )


@router.get("/console/segments")
async def segments_and_tags(request: Request) -> Response:
    async with signed_in(request) as page:
        return await _lists(page, {}, None)


@router.post("/console/segments")
async def create(request: Request) -> Response:
    """Create a segment (``form=segment``) or a tag (``form=tag``)."""
    async with signed_in(request) as page:
        form = await checked_form(request, page.session)
        key = idempotency(form)
        if form.get("form") == "tag":
            body = _body(form, FIELDS)
            body["kind"] = form.get("kind", "")
            if body["kind"] == "manual":
                body.pop("condition", None)
            outcome = await page.api.call("POST", "/v1/tags", json_body=body, headers=key)
            target = f"/console/tags/{body.get('name', '')}"
        else:
            form["form"] = "segment"
            body = _body(form, FIELDS)
            outcome = await page.api.call("POST", "/v1/segments", json_body=body, headers=key)
            target = f"/console/segments/{(outcome.body or {}).get('segment_id', '')}"
        if outcome.ok:
            return RedirectResponse(target, status_code=303)
        return await _lists(page, form, outcome)


async def _segment_page(
    page: Page, segment_id: str, form: dict[str, str] | None, outcome: ApiResult | None
) -> Response:
    segment, history, members = await asyncio.gather(
        page.api.get(f"/v1/segments/{segment_id}"),
        page.api.get(f"/v1/segments/{segment_id}/definitions"),
        page.api.get(f"/v1/segments/{segment_id}/members", {"limit": 50}),
    )
    if not segment.ok:
        return page.render(
            "segment.html", status=segment.status, segment=None, problem=segment.problem
        )
    return _edit_page(
        page,
        "segment.html",
        segment.body,
        history,
        form,
        outcome,
        segment=segment.body,
        members=members.body if members.ok else {"items": [], "count": None},
    )


@router.get("/console/segments/{segment_id}")
async def segment(request: Request, segment_id: SegmentId) -> Response:
    async with signed_in(request) as page:
        return await _segment_page(page, segment_id, None, None)


@router.post("/console/segments/{segment_id}")
async def edit_segment(request: Request, segment_id: SegmentId) -> Response:
    async with signed_in(request) as page:
        form = await checked_form(request, page.session)
        path = f"/v1/segments/{segment_id}"
        outcome = await page.api.call(
            "PATCH", path, json_body=_body(form, FIELDS), headers=idempotency(form)
        )
        if outcome.ok:
            return RedirectResponse(f"/console/segments/{segment_id}", status_code=303)
        return await _segment_page(page, segment_id, form, outcome)


@router.get("/console/segments/{segment_id}/explain")
async def explain_form(
    request: Request, segment_id: SegmentId, member_id: Annotated[str, Query(max_length=128)] = ""
) -> Response:
    target = f"/console/segments/{segment_id}"
    if member_id.strip():
        target += f"/explain/{member_id.strip()}"
    return RedirectResponse(target, status_code=303)


@router.get("/console/segments/{segment_id}/explain/{member_id}")
async def explain(request: Request, segment_id: SegmentId, member_id: MemberId) -> Response:
    async with signed_in(request) as page:
        result = await page.api.get(f"/v1/segments/{segment_id}/explain/{member_id}")
        return page.render(
            "explain.html",
            status=200 if result.ok else result.status,
            segment_id=segment_id,
            member_id=member_id,
            explain=result.body if result.ok else None,
            problem=None if result.ok else result.problem,
        )


async def _tag_page(
    page: Page, name: str, form: dict[str, str] | None, outcome: ApiResult | None
) -> Response:
    tag, history = await asyncio.gather(
        page.api.get(f"/v1/tags/{name}"), page.api.get(f"/v1/tags/{name}/definitions")
    )
    if not tag.ok:
        return page.render("tag.html", status=tag.status, tag=None, problem=tag.problem)
    return _edit_page(page, "tag.html", tag.body, history, form, outcome, tag=tag.body)


@router.get("/console/tags/{name}")
async def tag(request: Request, name: TagName) -> Response:
    async with signed_in(request) as page:
        return await _tag_page(page, name, None, None)


@router.post("/console/tags/{name}")
async def edit_tag(request: Request, name: TagName) -> Response:
    async with signed_in(request) as page:
        form = await checked_form(request, page.session)
        current = await page.api.get(f"/v1/tags/{name}")
        rule = current.ok and current.body.get("kind") == "rule"
        fields = FIELDS if rule else ("name", "description")
        path = f"/v1/tags/{name}"
        outcome = await page.api.call(
            "PATCH", path, json_body=_body(form, fields), headers=idempotency(form)
        )
        if outcome.ok:
            return RedirectResponse(f"/console/tags/{outcome.body['name']}", status_code=303)
        return await _tag_page(page, name, form, outcome)
