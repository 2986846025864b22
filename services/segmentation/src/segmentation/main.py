"""create_app(): the segmentation service's HTTP API."""

from fastapi import FastAPI

from loyalty_shared.app import create_service_app
from segmentation.profiles.endpoints import router as profiles_router
from segmentation.settings import SegmentationSettings


def create_app(settings: SegmentationSettings | None = None) -> FastAPI:
    settings = settings or SegmentationSettings()
    return create_service_app(
        settings,
        title="Loyalty segmentation service",
        description="360 profiles, RFM, value tiers, lifecycle, tags, segments, KPIs and CLV.",
        routers=[profiles_router],
        openapi_tags=[{"name": "profiles", "description": "360 customer profiles"}],
    )
