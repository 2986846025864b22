"""The ops console at ``/console``: server-rendered pages over the gateway's own API."""

from fastapi import APIRouter, FastAPI

from gateway.console import complaints, members, overview, pipeline, segments, signin
from gateway.console.web import EXCEPTION_HANDLERS

router = APIRouter(include_in_schema=False)
for _part in (
    signin.router,
    overview.router,
    complaints.router,
    members.router,
    segments.router,
    pipeline.router,
):
    router.include_router(_part)


def install(app: FastAPI) -> None:
    """The console's answers to a missing session, a refused form and a console that is off."""
    for exc_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exc_class, handler)


__all__ = ["install", "router"]
