"""create_app(): the feedback service's HTTP API."""

from fastapi import FastAPI

from feedback.ahp.endpoints import router as ahp_router
from feedback.clock import ClockFn, system_clock
from feedback.complaints.endpoints import member_router as member_complaints_router
from feedback.complaints.endpoints import router as complaints_router
from feedback.followups.endpoints import router as follow_ups_router
from feedback.members.endpoints import router as members_router
from feedback.metrics.endpoints import router as metrics_router
from feedback.privacy.endpoints import router as privacy_router
from feedback.settings import FeedbackSettings
from feedback.sla.endpoints import router as sla_router
from feedback.surveys.endpoints import member_router as member_surveys_router
from feedback.surveys.endpoints import router as surveys_router
from loyalty_shared.app import create_service_app


def create_app(settings: FeedbackSettings | None = None, clock: ClockFn | None = None) -> FastAPI:
    """``clock`` replaces the system clock (tests drive SLA deadlines with it)."""
    settings = settings or FeedbackSettings()
    app = create_service_app(
        settings,
        title="Loyalty feedback service",
        description="Complaints with SLA clocks, follow-up visits, surveys, NPS/CSAT/CSI.",
        routers=[
            complaints_router,
            member_complaints_router,
            sla_router,
            follow_ups_router,
            surveys_router,
            member_surveys_router,
            metrics_router,
            ahp_router,
            members_router,
            privacy_router,
        ],
        openapi_tags=[
            {"name": "complaints", "description": "Complaints, their state machine and SLA clocks"},
            {"name": "sla", "description": "SLA policies and business-hours calendars (data)"},
            {"name": "follow-ups", "description": "Follow-up visits (回访)"},
            {"name": "surveys", "description": "Survey definitions and responses"},
            {"name": "metrics", "description": "NPS, CSAT, CSI (AHP) and service metrics"},
            {
                "name": "privacy",
                "description": "Data subject export; erasure runs on member.erased",
            },
        ],
    )
    app.state.clock = clock or system_clock
    return app
