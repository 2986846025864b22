"""Signing in and out of the console, and its static files.

Sign-in takes an ops or admin API key from a password field (never from the URL), checks
it with the gateway's own authenticator and seals it in the session cookie. Storefront
keys and member tokens are refused: the console is for staff.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from gateway.auth import AuthenticationFailed, Authenticator
from gateway.console.session import Session, new_session
from gateway.console.web import HERE, checked_form, codec_of, templates

router = APIRouter(include_in_schema=False)
log = structlog.get_logger("gateway.console")

STAFF_SCOPES = ("ops", "admin")
STATIC = HERE / "static"
_MEDIA = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".md": "text/markdown",
    ".txt": "text/plain",
}
# The files served, by name (nothing else under the folder is reachable).
STATIC_FILES: dict[str, Path] = {
    path.relative_to(STATIC).as_posix(): path
    for path in STATIC.rglob("*")
    if path.is_file() and path.suffix in _MEDIA
}


def _form(request: Request, session: Session, error: str | None, status: int) -> Response:
    context = {"session": session, "csrf": session.csrf, "path": "/console/login", "error": error}
    response = templates.TemplateResponse(request, "login.html", context, status_code=status)
    codec_of(request).write(response, session)
    return response


@router.get("/console/login")
async def login_form(request: Request) -> Response:
    codec = codec_of(request)
    session = codec.read(request)
    if session is not None and session.signed_in:
        return RedirectResponse("/console", status_code=303)
    return _form(request, session or new_session(), None, 200)


def _staff(authenticator: Authenticator, key: str) -> tuple[str, str] | str:
    """(name, scope) of an ops or admin key; else why it is refused."""
    if not key or key.count(".") == 2:
        return "Sign in with an ops or admin API key (member tokens cannot sign in)."
    try:
        identity = authenticator.authenticate(f"Bearer {key}")
    except AuthenticationFailed:
        return "That API key is not valid."
    if identity.scope not in STAFF_SCOPES:
        return f"A {identity.scope} key cannot sign in: use an ops or admin key."
    return identity.name, identity.scope


@router.post("/console/login")
async def login(request: Request) -> Response:
    codec = codec_of(request)
    session = codec.read(request) or new_session()
    form = await checked_form(request, session)
    staff = _staff(request.app.state.authenticator, form.get("api_key", "").strip())
    if isinstance(staff, str):
        log.info("console_sign_in_refused", reason=staff)
        return _form(request, new_session(), staff, 401)
    name, scope = staff
    signed = Session(csrf=new_session().csrf, key=form["api_key"].strip(), name=name, scope=scope)
    log.info("console_signed_in", key_name=name, scope=scope)
    response = RedirectResponse("/console", status_code=303)
    codec.write(response, signed)
    return response


@router.post("/console/logout")
async def logout(request: Request) -> Response:
    codec = codec_of(request)
    session = codec.read(request) or new_session()
    await checked_form(request, session)
    log.info("console_signed_out", key_name=session.name)
    response = RedirectResponse("/console/login", status_code=303)
    codec.clear(response)
    return response


@router.get("/console/static/{name:path}")
async def static(name: str) -> Response:
    path = STATIC_FILES.get(name)
    if path is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    return FileResponse(
        path,
        media_type=_MEDIA[path.suffix],
        headers={"Cache-Control": "public, max-age=3600"},
    )
