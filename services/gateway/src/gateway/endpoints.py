"""The gateway's own API: member tokens and the composite member status."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from gateway.auth import MemberTokens
from gateway.guard import Admitted, Denied, Guard
from gateway.proxy import forward_headers, with_headers
from gateway.upstream import UpstreamError, Upstreams
from loyalty_shared.problems import Unprocessable, problem_response

router = APIRouter(tags=["gateway"])

MemberId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$")
]


_MEMBER_ID: TypeAdapter[str] = TypeAdapter(MemberId)


class MemberTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: MemberId = Field(description="The shop's customer id, already logged in")
    ttl_seconds: int | None = Field(
        default=None, ge=60, description="Lifetime; default 15 minutes, at most the configured max"
    )


class MemberTokenOut(BaseModel):
    token: str = Field(description="A JWT to send as `Authorization: Bearer <token>`")
    expires_at: datetime


async def admit(request: Request) -> Admitted | Response:
    """The guard's decision on a request for one of the gateway's own routes."""
    guard: Guard = request.app.state.guard
    try:
        return await guard.admit(request)
    except Denied as denied:
        return denied.response


def check_member_id(member_id: str) -> None:
    """422 (``path.member_id``) for an id no service would accept."""
    try:
        _MEMBER_ID.validate_python(member_id)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("path", "member_id")} for e in exc.errors()]
        ) from exc


# what a composite call about one member can answer besides its own body
MEMBER_CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or bad credentials"},
    403: {"description": "Forbidden"},
    404: {"description": "No such member"},
    422: {"description": "Invalid member id"},
}


@dataclass(frozen=True)
class MemberCall:
    """A composite call about one member, admitted: what to send the services it asks."""

    admitted: Admitted
    upstreams: Upstreams
    headers: list[tuple[bytes, bytes]]  # the caller's identity, without a content type
    quoted: str  # the member id as a path segment


async def member_call(request: Request, member_id: str) -> MemberCall | Response:
    """The guard's decision (a refusal is the answer), then a valid member id (422)."""
    admitted = await admit(request)
    if isinstance(admitted, Response):
        return admitted
    check_member_id(member_id)
    return MemberCall(
        admitted,
        request.app.state.upstreams,
        [(k, v) for k, v in forward_headers(request, admitted) if k != b"content-type"],
        quote(member_id, safe=""),
    )


def not_found(request: Request, member_id: str, admitted: Admitted) -> Response:
    return with_headers(
        problem_response(
            404,
            "Not found",
            f"No member {member_id!r}",
            slug="member-not-found",
            instance=request.url.path,
        ),
        admitted.rate_headers,
    )


@router.post(
    "/v1/auth/member-tokens",
    status_code=201,
    response_model=MemberTokenOut,
    summary="Issue a short-lived member token for a logged-in customer",
    responses={
        401: {"description": "No or bad credentials"},
        403: {"description": "Forbidden"},
        422: {"description": "Invalid member id or ttl_seconds"},
    },
    # The body is read after the caller is admitted (401 before 422), so it is declared here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": MemberTokenIn.model_json_schema()}},
        }
    },
)
async def issue_member_token(request: Request) -> Response:
    admitted = await admit(request)
    if isinstance(admitted, Response):
        return admitted
    try:
        body = MemberTokenIn.model_validate_json(admitted.body or b"null")
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        ) from exc
    tokens: MemberTokens = request.app.state.authenticator.tokens
    if body.ttl_seconds is not None and body.ttl_seconds > tokens.max_ttl:
        raise Unprocessable(
            f"ttl_seconds may be at most {tokens.max_ttl}", errors=[{"field": "body.ttl_seconds"}]
        )
    token, expires_at = tokens.issue(body.member_id, body.ttl_seconds)
    out = MemberTokenOut(token=token, expires_at=expires_at)
    return with_headers(
        JSONResponse(out.model_dump(mode="json"), status_code=201), admitted.rate_headers
    )


# -- composite member status ---------------------------------------------------------

PartState = Literal["ok", "unavailable"]


class ProfileSummary(BaseModel):
    value_tier: str | None = None
    lifecycle_stage: str | None = None
    tags: list[Any] = []


class StatusPart(BaseModel):
    status: PartState
    reason: str | None = Field(default=None, description="Why the part is unavailable")


class MemberStatusOut(BaseModel):
    member_id: str
    membership: dict[str, Any] | None = Field(
        description="GET /v1/members/{member_id} of the points service (null if unavailable)"
    )
    profile: ProfileSummary | None = Field(
        default=None,
        description="From segmentation; null if unavailable or not computed yet. Absent for a "
        "member token: value tier, lifecycle and tags are internal labels",
    )
    open_complaints: int | None = Field(
        description="Complaints not yet resolved (open, acknowledged, in progress, escalated), "
        "from feedback; null if unavailable"
    )
    parts: dict[str, StatusPart]


class _Unavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _get_json(
    upstreams: Upstreams,
    service: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    budget: float,
    missing_ok: bool = False,
) -> dict[str, Any] | None:
    try:
        response = await upstreams.request(
            service, "GET", path, headers=headers, timeout_seconds=budget
        )
    except UpstreamError as exc:
        raise _Unavailable(exc.kind) from exc
    if response.status_code == 404 and missing_ok:
        return None
    if response.status_code != 200:
        raise _Unavailable(f"HTTP {response.status_code}")
    try:
        doc = response.json()
    except ValueError as exc:  # not JSON, or not UTF-8
        raise _Unavailable("invalid response") from exc
    return doc if isinstance(doc, dict) else None


@router.get(
    "/v1/members/{member_id}/status",
    response_model=MemberStatusOut,
    summary="Composite status for the app: membership, profile summary, open complaints",
    description="The three parts are fetched in parallel; a slow or failing service marks "
    "its part unavailable and the answer still comes.",
    responses=MEMBER_CALL_RESPONSES,
)
async def member_status(
    request: Request, member_id: Annotated[str, Path(description="The shop's customer id")]
) -> Response:
    call = await member_call(request, member_id)
    if isinstance(call, Response):
        return call
    admitted, upstreams, headers, quoted = call.admitted, call.upstreams, call.headers, call.quoted
    budget: float = request.app.state.settings.status_part_timeout_seconds
    # A member token never reads internal labels (API.md "Additions"): segmentation's summary
    # (value tier, lifecycle, tags) is not even asked for, and the answer has no profile.
    for_member = admitted.identity.scope == "member"
    calls = {
        "points": _get_json(
            upstreams, "points", f"/v1/members/{quoted}", headers, budget, missing_ok=True
        ),
        **(
            {}
            if for_member
            else {
                "segmentation": _get_json(
                    upstreams, "segmentation", f"/v1/profiles/{quoted}", headers, budget, True
                )
            }
        ),
        "feedback": _open_complaints(upstreams, f"/v1/feedback/members/{quoted}", headers, budget),
    }
    results = dict(
        zip(calls, await asyncio.gather(*calls.values(), return_exceptions=True), strict=True)
    )
    parts: dict[str, StatusPart] = {}
    for name, result in results.items():
        if isinstance(result, _Unavailable):
            parts[name] = StatusPart(status="unavailable", reason=result.reason)
        elif isinstance(result, BaseException):
            raise result
        else:
            parts[name] = StatusPart(status="ok")
    membership, profile, complaints = (
        results.get(n) for n in ("points", "segmentation", "feedback")
    )
    if parts["points"].status == "ok" and membership is None:
        return not_found(request, member_id, admitted)
    out = MemberStatusOut(
        member_id=member_id,
        membership=membership if isinstance(membership, dict) else None,
        profile=_profile_summary(profile) if isinstance(profile, dict) else None,
        open_complaints=complaints if isinstance(complaints, int) else None,
        parts=parts,
    )
    body = out.model_dump(mode="json", exclude={"profile"} if for_member else None)
    return with_headers(JSONResponse(body), admitted.rate_headers)


def _profile_summary(profile: dict[str, Any]) -> ProfileSummary:
    lifecycle = profile.get("lifecycle_stage", profile.get("lifecycle"))
    tags = profile.get("tags") or []
    return ProfileSummary(
        value_tier=profile.get("value_tier"),
        lifecycle_stage=lifecycle if isinstance(lifecycle, str) else None,
        tags=tags if isinstance(tags, list) else [],
    )


async def _open_complaints(
    upstreams: Upstreams, path: str, headers: list[tuple[bytes, bytes]], budget: float
) -> int:
    """Feedback's own count of the member's complaints that are not yet dealt with.

    Every state of feedback's complaint state machine before ``resolved`` counts (open,
    acknowledged, in progress, escalated: ``feedback.complaints.service.ACTIVE_STATES``),
    counted by feedback itself, so the app and the ops tools agree and nothing is capped.
    """
    view = await _get_json(upstreams, "feedback", path, headers, budget)
    count = (view or {}).get("open_complaints")
    if not isinstance(count, int) or isinstance(count, bool):
        raise _Unavailable("invalid response")
    return count
