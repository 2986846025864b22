"""create_app(): the feedback service's HTTP API."""

from fastapi import FastAPI

from feedback.complaints.endpoints import router as complaints_router
from feedback.settings import FeedbackSettings
from loyalty_shared.app import create_service_app


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    return create_service_app(
        settings,
        title="Loyalty feedback service",
        description="Complaints with SLA clocks, follow-up visits, surveys, NPS/CSAT/CSI.",
        routers=[complaints_router],
        openapi_tags=[{"name": "complaints", "description": "Complaints and their SLA clocks"}],
    )
