"""The fast lane: the hottest routes served without FastAPI's routing machinery.

A front route whose endpoint is marked with ``fast_lane`` is served by ``FastLane`` (pure
ASGI) with the same answers as the full stack; what it buys is measured by bench/orders.py
(``HOTPATH_OFF=["fast_lane"]``) and written down in ``loyalty_shared.hotpath``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_FAST_LANE_ATTR = "__loyalty_fast_lane__"

E = TypeVar("E", bound=Callable[..., Awaitable[Response]])


def fast_lane(**path_params: Any) -> Callable[[E], E]:
    """Mark a front route's endpoint for ``FastLane`` (see there); ``path_params``: name -> type.

    The endpoint takes ``request`` plus the named path parameters, has no dependencies, and
    returns a ``Response``. Its route, OpenAPI and behaviour on the full stack stay as
    declared: this only lets ``FastLane`` call it directly.
    """

    def mark(endpoint: E) -> E:
        adapters = {name: TypeAdapter(kind) for name, kind in path_params.items()}
        setattr(endpoint, _FAST_LANE_ATTR, adapters)
        return endpoint

    return mark


class _FastRoute:
    def __init__(self, route: APIRoute, adapters: dict[str, TypeAdapter[Any]]) -> None:
        expected = {"request", *adapters}
        parameters = set(inspect.signature(route.endpoint).parameters)
        if parameters != expected or route.dependencies:
            raise TypeError(
                f"{route.path}: a fast-lane endpoint takes exactly {sorted(expected)} "
                "and has no dependencies"
            )
        methods = route.methods or set()
        if len(methods) != 1:
            raise TypeError(f"{route.path}: a fast-lane route has one method")
        self.route = route
        self.method = next(iter(methods))
        self.path_regex = route.path_regex
        self.convertors = route.param_convertors
        self.adapters = adapters

    def arguments(self, path: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(path params, endpoint arguments) as routing and FastAPI make them; None if the
        path is not this route's, or a parameter is invalid (the full stack then answers,
        with its own error)."""
        match = self.path_regex.match(path)
        if match is None:
            return None
        params = {k: self.convertors[k].convert(v) for k, v in match.groupdict().items()}
        kwargs: dict[str, Any] = {}
        for name, adapter in self.adapters.items():
            try:
                kwargs[name] = adapter.validate_python(params[name])
            except ValidationError:
                return None
        return params, kwargs


def fast_routes(routes: Sequence[BaseRoute]) -> list[_FastRoute]:
    """The routes among ``routes`` whose endpoint is marked with ``fast_lane``."""
    found = []
    for route in routes:
        adapters = getattr(getattr(route, "endpoint", None), _FAST_LANE_ATTR, None)
        if adapters is not None:
            if not isinstance(route, APIRoute):  # pragma: no cover - marked by hand
                raise TypeError(f"{route!r}: only API routes can take the fast lane")
            found.append(_FastRoute(route, adapters))
    return found


class FastLane:
    """Pure ASGI: a request for a marked front route goes straight to its endpoint.

    FastAPI would route it (front routes are the first routes tried, so the match is the
    same), build a ``Request``, solve an empty dependency set in two exit stacks, call the
    endpoint and send the ``Response`` it returns, five ASGI layers down; its exception
    middleware turns errors into answers with the app's handlers. Here: the same endpoint
    with a ``Request``, its path parameters validated the same way, and an error handled as
    Starlette's exception middleware does it, with the handlers FastAPI gives that
    middleware (unhandled ones go on up to the server-error middleware, as before). So
    every answer, error or not, is the one the full stack gives
    (``services/points/tests/test_fast_lane.py`` compares them). It sits inside
    ``RequestContextMiddleware`` (request id, access log, metrics: ``scope["route"]`` is
    set as routing sets it). Anything else, an invalid path parameter, a mounted app
    (``root_path``) or FastAPI's own telemetry being on for the request goes down the
    full stack untouched.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[_FastRoute]) -> None:
        self.app = app
        self.routes = tuple(routes)
        self._handlers: tuple[dict[Any, Any], dict[int, Any]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and not scope.get("root_path")
            and scope.get("fastapi.telemetry") is None
        ):
            method = scope["method"]
            for fast in self.routes:
                if fast.method == method:
                    found = fast.arguments(scope["path"])
                    if found is not None:
                        await self._serve(fast.route, found[0], found[1], scope, receive, send)
                        return
        await self.app(scope, receive, send)

    async def _serve(
        self,
        route: APIRoute,
        path_params: dict[str, Any],
        kwargs: dict[str, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        # what routing puts in the scope
        if "router" not in scope:
            scope["router"] = scope["app"].router
        scope["endpoint"] = route.endpoint
        scope["path_params"] = path_params
        scope["route"] = route
        request = Request(scope, receive, send)
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            response = await route.endpoint(request=request, **kwargs)
            await response(scope, receive, sender)
        except Exception as exc:
            # Starlette's wrap_app_handling_exceptions, with ExceptionMiddleware's handlers
            handler = self._handler(scope["app"], exc)
            if handler is None:
                raise
            if started:
                raise RuntimeError(
                    "Caught handled exception, but response already started."
                ) from exc
            if _is_async_callable(handler):
                answer = await handler(request, exc)
            else:
                answer = await run_in_threadpool(handler, request, exc)
            if answer is not None:
                await answer(scope, receive, sender)
            exc.__traceback__ = None  # as Starlette: reused exceptions keep no traceback

    def _handler(self, app: Any, exc: Exception) -> Any:
        if self._handlers is None:
            # ExceptionMiddleware's default for HTTPException, then what FastAPI's
            # build_middleware_stack hands it (500 and Exception go to the server-error
            # middleware, outside this one)
            default = ExceptionMiddleware(self.app).http_exception
            by_class: dict[Any, Any] = {HTTPException: default}
            by_status: dict[int, Any] = {}
            for key, value in app.exception_handlers.items():
                if key in (500, Exception):
                    continue
                if isinstance(key, int):
                    by_status[key] = value
                else:
                    by_class[key] = value
            self._handlers = (by_class, by_status)
        by_class, by_status = self._handlers
        handler = None
        if isinstance(exc, HTTPException):
            handler = by_status.get(exc.status_code)
        if handler is None:
            for cls in type(exc).__mro__:
                if cls in by_class:
                    return by_class[cls]
        return handler


def _is_async_callable(obj: Any) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or (
        callable(obj) and inspect.iscoroutinefunction(obj.__call__)
    )
