"""RFC 9457 problem details: the domain error base and the exception handlers."""

from __future__ import annotations

import socket
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from loyalty_shared.failures import chain, is_transient, sqlstate

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://loyalty-platform.dev/problems/"

log = structlog.get_logger("loyalty.problems")


def problem_type(slug: str) -> str:
    return PROBLEM_BASE + slug


class ProblemError(Exception):
    """A domain error the client can act on. Subclasses set slug, status and title."""

    slug: str = "bad-request"
    status: int = 400
    title: str = "Bad request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": problem_type(self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extensions)
        return body


class NotFound(ProblemError):
    slug = "not-found"
    status = 404
    title = "Not found"


class Conflict(ProblemError):
    slug = "conflict"
    status = 409
    title = "Conflict"


class Unprocessable(ProblemError):
    slug = "unprocessable"
    status = 422
    title = "Unprocessable request"


class Forbidden(ProblemError):
    slug = "forbidden"
    status = 403
    title = "Forbidden"


class ServiceUnavailable(ProblemError):
    slug = "service-unavailable"
    status = 503
    title = "Service unavailable"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(slug) if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


FORBIDDEN_DETAIL = "These credentials may not call this route."


def forbidden_response() -> JSONResponse:
    """The one 403 for "not yours": the gateway's refusal of a member naming another member,
    and a service's answer to a member token naming another member's resource (or one that
    does not exist). No instance and no id: the body says nothing about what was asked."""
    return problem_response(403, "Forbidden", FORBIDDEN_DETAIL, slug="forbidden")


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    body = exc.to_dict()
    body.setdefault("instance", request.url.path)
    return JSONResponse(body, status_code=exc.status, media_type=PROBLEM_JSON)


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    malformed = False
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            malformed = True
        errors.append(
            {
                "field": _field_path(err.get("loc", ())),
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    if malformed:
        return problem_response(
            400,
            "Malformed request body",
            "The request body is not valid JSON.",
            slug="malformed-json",
            instance=request.url.path,
            errors=errors,
        )
    fields = ", ".join(e["field"] for e in errors)
    return problem_response(
        422,
        "Request validation failed",
        f"{len(errors)} invalid field(s): {fields}",
        slug="validation-error",
        instance=request.url.path,
        errors=errors,
    )


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {
        404: "Not found",
        405: "Method not allowed",
        401: "Unauthorized",
        403: "Forbidden",
        413: "Request body too large",
    }
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route matches {request.method} {request.url.path}"
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(
        exc.status_code,
        titles.get(exc.status_code, "HTTP error"),
        detail,
        instance=request.url.path,
        headers=dict(exc.headers) if exc.headers else None,
    )


# Errors of a database that cannot be reached (asyncpg's own, raised on the hot paths'
# driver connection, and the network's); SQLAlchemy wraps them in its DBAPIError.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # a connection whose server went away mid-statement ("another operation is in progress")
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    ConnectionError,
    socket.gaierror,
)


def database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now (not that a statement failed).

    The whole chain is read: the hot paths' driver connections raise asyncpg's own errors,
    a pool checkout during a restart raises the dialect's adapted error caused by
    asyncpg's ``CannotConnectNowError``, a vanished unix socket a ``FileNotFoundError``.
    """
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    code = sqlstate(exc)
    if code is not None and (code.startswith("08") or code in {"57P01", "57P02", "57P03"}):
        return True
    for link in chain(exc):
        if isinstance(link, sa_exc.DBAPIError) and (
            link.connection_invalidated
            or isinstance(link, sa_exc.OperationalError | sa_exc.InterfaceError)
        ):
            return True
        if isinstance(link, (*_UNREACHABLE, OSError)):
            return True
    return False


async def _handle_database_error(request: Request, exc: Exception) -> JSONResponse:
    return await _handle_unexpected(request, exc)


def _database_unavailable(request: Request, exc: BaseException) -> JSONResponse:
    # an outage, not a bug: clients and the gateway may retry (nothing was committed)
    log.warning("database_unreachable", path=request.url.path, error_type=type(exc).__name__)
    return problem_response(
        503,
        "Database unavailable",
        "The service cannot reach its database right now; nothing was changed. Retry shortly.",
        slug="database-unavailable",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    """A deadlock, a serialization failure, a lock timeout: the transaction was rolled back
    whole, so the same request is safe to send again (writes take Idempotency-Keys)."""
    log.warning(
        "database_busy",
        path=request.url.path,
        error_type=type(exc).__name__,
        sqlstate=sqlstate(exc),
    )
    return problem_response(
        503,
        "Database busy",
        "The request collided with other writes and was rolled back; nothing was changed. "
        "Retry it.",
        slug="database-busy",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A 500, unless the error says the database is away (503) or busy (503, retry): those
    are outages and collisions, not bugs, and nothing was committed."""
    if database_unreachable(exc):
        return _database_unavailable(request, exc)
    if is_transient(exc):
        return _database_busy(request, exc)
    log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
    return problem_response(
        500,
        "Internal server error",
        "An unexpected error occurred; it has been logged with this request's id.",
        slug="internal-error",
        instance=request.url.path,
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    # Registered one by one, not only under Exception: Starlette re-raises what the
    # Exception handler answers (a 500 path), and these are answered as outages (503).
    for database_error in (
        sa_exc.DBAPIError,
        sa_exc.TimeoutError,
        sa_exc.EmulatedDBAPIException,  # the asyncpg dialect's adapted errors (pool checkout)
        OSError,  # a unix socket gone while Postgres restarts, a refused connection
        *_UNREACHABLE,
    ):
        app.add_exception_handler(database_error, _handle_database_error)
    app.add_exception_handler(Exception, _handle_unexpected)
