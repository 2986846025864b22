"""What every console page shares: the templates, the signed-in caller, and the gateway's own
API called in process with the caller's key.

Every figure the console shows comes from a call to the public API (``/v1/...``) made with
the signed-in key, through the whole gateway: authentication, the route policy, rate limits,
the proxy. An ops key sees what ops may see, and nothing the console does is a way around
the policy (``gateway.policy``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import httpx
from fastapi import Path as PathParam
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from gateway.console.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    ConsoleDisabled,
    Session,
    SessionCodec,
    csrf_matches,
    new_session,
)
from loyalty_shared.request_context import current_request_id

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def when(value: object) -> str:
    """An RFC 3339 time from the API as people read it (UTC, to the minute)."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["when"] = when
MAX_FORM_BYTES = 64 * 1024
MemberId = Annotated[str, PathParam(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$")]


@dataclass(slots=True)
class ApiResult:
    status: int
    body: Any
    headers: httpx.Headers = field(default_factory=httpx.Headers)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def problem(self) -> str:
        """What went wrong, for a person (a problem's detail, else the status)."""
        if isinstance(self.body, dict):
            detail = self.body.get("detail") or self.body.get("title")
            if isinstance(detail, str):
                return detail
        return f"HTTP {self.status}"


class ConsoleApi:
    """The gateway's public API, called in process with the signed-in key."""

    def __init__(self, request: Request, key: str) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        request_id = current_request_id()
        if request_id:
            headers["X-Request-ID"] = request_id  # one id across the page and its API calls
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=request.app),
            base_url="http://console.internal",
            headers=headers,
            timeout=30.0,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResult:
        response = await self._client.request(
            method, path, params=params, json=json_body, headers=headers
        )
        if response.status_code == 401:
            raise SignInRequired  # the key was revoked or rotated since sign-in
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return ApiResult(response.status_code, body, response.headers)

    async def get(self, path: str, params: Any = None) -> ApiResult:
        return await self.call("GET", path, params=params)

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(slots=True)
class Page:
    """One signed-in request: its session, the API as its caller, the cookie codec."""

    request: Request
    session: Session
    codec: SessionCodec
    api: ConsoleApi

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.update(session=self.session, csrf=self.session.csrf, path=self.request.url.path)
        return templates.TemplateResponse(self.request, template, context, status_code=status)


class ConsoleOff(Exception):
    """The console is not configured (answered 404 with the reason)."""


class SignInRequired(Exception):
    """No session, a cookie that does not open, or a key the API no longer accepts."""


def codec_of(request: Request) -> SessionCodec:
    codec: SessionCodec | None = getattr(request.app.state, "console_codec", None)
    if codec is None:
        try:
            codec = SessionCodec.from_settings(request.app.state.settings)
        except ConsoleDisabled as exc:
            raise ConsoleOff(str(exc)) from exc
        request.app.state.console_codec = codec
    return codec


def anonymous(request: Request, codec: SessionCodec) -> Session:
    """The caller's session, or a new signed-out one."""
    return codec.read(request) or new_session()


def to_sign_in(request: Request, codec: SessionCodec) -> Response:
    if request.headers.get("hx-request"):
        response: Response = Response(status_code=204, headers={"HX-Redirect": "/console/login"})
    else:
        response = RedirectResponse("/console/login", status_code=303)
    codec.clear(response)
    return response


async def sign_in_required(request: Request, exc: Exception) -> Response:
    return to_sign_in(request, codec_of(request))


async def console_off(request: Request, exc: Exception) -> Response:
    return HTMLResponse(f"<h1>Not found</h1><p>{exc}</p>", status_code=404)


@asynccontextmanager
async def signed_in(request: Request) -> AsyncIterator[Page]:
    """The signed-in caller's page (``SignInRequired`` otherwise: a redirect to sign in)."""
    codec = codec_of(request)
    session = codec.read(request)
    if session is None or session.key is None:
        raise SignInRequired
    api = ConsoleApi(request, session.key)
    try:
        yield Page(request, session, codec, api)
    finally:
        await api.aclose()


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the console's only kind of form)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


class CsrfRefused(Exception):
    """A form post without the session's CSRF token (answered 403)."""


async def csrf_refused(request: Request, exc: Exception) -> Response:
    session = anonymous(request, codec_of(request))
    context = {"session": session, "csrf": session.csrf, "path": request.url.path}
    return templates.TemplateResponse(request, "refused.html", context, status_code=403)


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """The posted form, once its CSRF token (field or ``X-CSRF-Token``) matches the
    session's; ``CsrfRefused`` otherwise."""
    form = await read_form(request)
    presented = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not csrf_matches(session, presented):
        raise CsrfRefused
    return form


EXCEPTION_HANDLERS = {
    SignInRequired: sign_in_required,
    ConsoleOff: console_off,
    CsrfRefused: csrf_refused,
}


def field_errors(result: ApiResult) -> dict[str, list[dict[str, Any]]]:
    """A 422's errors by field name (the last part of ``body.reason``), to show under the
    form's fields."""
    out: dict[str, list[dict[str, Any]]] = {}
    errors = result.body.get("errors", []) if isinstance(result.body, dict) else []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict):
            name = str(error.get("field", "")).split(".")[-1]
            out.setdefault(name, []).append(error)
    return out


def idempotency(form: dict[str, str]) -> dict[str, str]:
    """The ``Idempotency-Key`` drawn with the form (a double submit acts once)."""
    return {"Idempotency-Key": form.get("idempotency_key") or uuid.uuid4().hex}
