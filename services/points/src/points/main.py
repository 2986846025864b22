"""create_app(): the points service's HTTP API."""

from fastapi import FastAPI

from loyalty_shared.app import create_service_app
from points.members.endpoints import router as members_router
from points.orders.endpoints import router as orders_router
from points.settings import PointsSettings


def create_app(settings: PointsSettings | None = None) -> FastAPI:
    settings = settings or PointsSettings()
    return create_service_app(
        settings,
        title="Loyalty points service",
        description="Members, the points ledger, lots, tiers, earning rules, campaigns and rewards.",
        routers=[members_router, orders_router],
        openapi_tags=[
            {"name": "members", "description": "Enrolment and membership status"},
            {"name": "orders", "description": "Completed orders earn points"},
        ],
    )
