"""The ops console at ``/console``: server-rendered pages over the gateway's own API."""

from fastapi import APIRouter

from gateway.console import complaints, overview, signin
from gateway.console.web import EXCEPTION_HANDLERS

router = APIRouter(include_in_schema=False)
for _part in (signin.router, overview.router, complaints.router):
    router.include_router(_part)

__all__ = ["EXCEPTION_HANDLERS", "router"]
