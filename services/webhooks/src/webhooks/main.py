"""create_app(): the webhooks service's HTTP API (subscriptions and the delivery log)."""

from fastapi import FastAPI

from loyalty_shared.app import create_service_app
from webhooks.deliveries.endpoints import router as deliveries_router
from webhooks.settings import WebhooksSettings
from webhooks.subscriptions.endpoints import router as subscriptions_router


def create_app(settings: WebhooksSettings | None = None) -> FastAPI:
    settings = settings or WebhooksSettings()
    return create_service_app(
        settings,
        title="Loyalty webhooks service",
        description="The platform's events POSTed to shops' HTTP endpoints: signed, retried, "
        "logged (docs/webhooks.md).",
        routers=[subscriptions_router, deliveries_router],
        openapi_tags=[
            {
                "name": "webhooks",
                "description": "Subscriptions, secrets, the delivery log, retries, test events",
            }
        ],
    )
