"""create_app(): the segmentation service's HTTP API."""

from fastapi import FastAPI

from loyalty_shared.app import create_service_app
from segmentation.analytics.endpoints import router as analytics_router
from segmentation.analytics.jobs import JobRunner
from segmentation.contacts.endpoints import router as contacts_router
from segmentation.privacy.endpoints import router as privacy_router
from segmentation.profiles.endpoints import router as profiles_router
from segmentation.segments.endpoints import router as segments_router
from segmentation.settings import SegmentationSettings
from segmentation.strategies.endpoints import router as strategies_router


def create_app(settings: SegmentationSettings | None = None) -> FastAPI:
    settings = settings or SegmentationSettings()

    async def start_jobs(app: FastAPI) -> None:
        app.state.job_runner = JobRunner(settings, app.state.sessionmaker)
        await app.state.job_runner.recover()  # jobs left queued/running by a crashed process

    async def stop_jobs(app: FastAPI) -> None:
        await app.state.job_runner.stop()

    return create_service_app(
        settings,
        title="Loyalty segmentation service",
        description="360 profiles, RFM, value tiers, lifecycle, tags, segments, KPIs and CLV. "
        "Definitions: docs/segmentation.md.",
        routers=[
            profiles_router,
            privacy_router,
            segments_router,
            analytics_router,
            strategies_router,
            contacts_router,
        ],
        on_startup=[start_jobs],
        on_shutdown=[stop_jobs],
        openapi_tags=[
            {"name": "profiles", "description": "360 customer profiles"},
            {"name": "tags and segments", "description": "condition language, live memberships"},
            {
                "name": "analytics",
                "description": "recompute jobs, CLV model, KPIs, loyalty weights",
            },
            {"name": "strategies", "description": "the maintenance strategy matrix"},
            {"name": "contacts", "description": "contact frequency cap and channel preferences"},
            {"name": "privacy", "description": "export of a member's data"},
        ],
    )
