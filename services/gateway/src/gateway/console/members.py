"""A member: tier and progress, balance and expiring lots, the ledger (paged), the 360
profile, the segments the member is in (each with its explanation), complaints and surveys;
and a points adjustment that needs a reason and is sent with an ``Idempotency-Key``."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from gateway.console.web import (
    ApiResult,
    ConsoleApi,
    MemberId,
    Page,
    checked_form,
    field_errors,
    idempotency,
    signed_in,
)

router = APIRouter()

LEDGER_PAGE = 20
SEGMENTS_EXPLAINED = 20  # one explain call each, on the caller's rate limit


def progress(member: dict[str, Any]) -> dict[str, Any] | None:
    """Growth value towards the next tier (None at the top)."""
    nxt = member.get("next_tier")
    if not nxt:
        return None
    have = int(member.get("growth_value", 0))
    needed = have + int(nxt.get("growth_value_missing", 0))
    return {"name": nxt.get("name"), "have": have, "needed": needed, "missing": needed - have}


async def member_segments(api: ConsoleApi, member_id: str) -> list[dict[str, Any]]:
    """The live segments the member is in, each with the explain answer."""
    listed = await api.get("/v1/segments")
    if not listed.ok:
        return []
    segments = [s for s in listed.body.get("items", []) if not s.get("archived_at")]
    segments = segments[:SEGMENTS_EXPLAINED]
    answers = await asyncio.gather(
        *(api.get(f"/v1/segments/{s['segment_id']}/explain/{member_id}") for s in segments)
    )
    return [
        {**s, "explain": a.body}
        for s, a in zip(segments, answers, strict=True)
        if a.ok and a.body.get("in_segment")
    ]


async def _member_page(
    page: Page,
    member_id: str,
    cursor: str | None,
    *,
    form: dict[str, str] | None = None,
    outcome: ApiResult | None = None,
    notice: str | None = None,
) -> Response:
    api = page.api
    ledger_params: dict[str, Any] = {"limit": LEDGER_PAGE, **({"cursor": cursor} if cursor else {})}
    member, ledger, profile, complaints, surveys, segments = await asyncio.gather(
        api.get(f"/v1/members/{member_id}"),
        api.get(f"/v1/members/{member_id}/ledger", ledger_params),
        api.get(f"/v1/profiles/{member_id}"),
        api.get(f"/v1/members/{member_id}/complaints", {"limit": 20}),
        api.get(f"/v1/members/{member_id}/surveys"),
        member_segments(api, member_id),
    )
    failed = outcome is not None and not outcome.ok
    return page.render(
        "member.html",
        status=outcome.status if failed and outcome else (member.status if not member.ok else 200),
        member_id=member_id,
        member=member.body if member.ok else None,
        member_problem=None if member.ok else member.problem,
        progress=progress(member.body) if member.ok else None,
        ledger=ledger.body if ledger.ok else {"items": [], "next_cursor": None},
        ledger_problem=None if ledger.ok else ledger.problem,
        cursor=cursor,
        profile=profile.body if profile.ok else None,
        profile_problem=None if profile.ok else profile.problem,
        complaints=complaints.body.get("items", []) if complaints.ok else [],
        surveys=surveys.body if surveys.ok else None,
        segments=segments,
        form=form or {},
        adjust_problem=outcome.problem if failed and outcome else None,
        adjust_errors=field_errors(outcome) if failed and outcome else {},
        notice=notice,
        idempotency_key=uuid.uuid4().hex,
    )


@router.get("/console/members")
async def find_member(
    request: Request, member_id: Annotated[str, Query(max_length=128)] = ""
) -> Response:
    if member_id.strip():
        return RedirectResponse(f"/console/members/{member_id.strip()}", status_code=303)
    async with signed_in(request) as page:
        return page.render("member_search.html")


@router.get("/console/members/{member_id}")
async def member(
    request: Request,
    member_id: MemberId,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
    adjusted: Annotated[int | None, Query()] = None,
) -> Response:
    async with signed_in(request) as page:
        notice = f"Adjusted by {adjusted:+,} points." if adjusted else None
        return await _member_page(page, member_id, cursor, notice=notice)


@router.post("/console/members/{member_id}/adjustments")
async def adjust(request: Request, member_id: MemberId) -> Response:
    async with signed_in(request) as page:
        form = await checked_form(request, page.session)
        points: int | str = form.get("points", "").strip()
        try:
            points = int(points)
        except ValueError:
            pass  # sent as written: the API's 422 names the field
        outcome = await page.api.call(
            "POST",
            f"/v1/members/{member_id}/adjustments",
            json_body={"points": points, "reason": form.get("reason", "")},
            headers=idempotency(form),
        )
        if outcome.ok:
            return RedirectResponse(
                f"/console/members/{member_id}?adjusted={outcome.body['points']}",
                status_code=303,
            )
        return await _member_page(page, member_id, None, form=form, outcome=outcome)
