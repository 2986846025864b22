"""create_app(): the points service's HTTP API."""

from fastapi import FastAPI

from loyalty_shared.app import create_service_app
from loyalty_shared.keyed_locks import KeyedLocks
from points import rules_api
from points.actions.endpoints import router as actions_router
from points.adjustments.endpoints import router as adjustments_router
from points.checkout.endpoints import checkout_router
from points.checkout.facts_cache import OrderFactsCache
from points.checkout.realtime import EnrolmentTimes
from points.checkout.record import Checkout
from points.client_times import TimeBounds
from points.imports.endpoints import router as imports_router
from points.ledger.endpoints import router as ledger_router
from points.members.endpoints import router as members_router
from points.members.endpoints import status_router
from points.orders.endpoints import router as orders_router
from points.orders.schemas import OrderIn
from points.privacy.endpoints import router as privacy_router
from points.privacy.service import install_erased_member_answers
from points.reconciliation.endpoints import router as reconciliation_router
from points.redemptions.endpoints import router as redemptions_router
from points.rules_cache import RulesCache
from points.settings import PointsSettings


def create_app(settings: PointsSettings | None = None) -> FastAPI:
    settings = settings or PointsSettings()
    app = create_service_app(
        settings,
        title="Loyalty points service",
        description="Members, the points ledger, lots, tiers, earning rules, campaigns, rewards.",
        # checkout's routes first: FastAPI tries routers in order on every request
        routers=[
            orders_router,
            imports_router,
            members_router,
            privacy_router,
            redemptions_router,
            adjustments_router,
            ledger_router,
            actions_router,
            reconciliation_router,
            *rules_api.routers,
        ],
        extra_schemas=[OrderIn],
        front_routers=[checkout_router, status_router],
        openapi_tags=[
            {"name": "members", "description": "Enrolment and membership status"},
            {"name": "orders", "description": "Completed orders earn points; refunds reverse them"},
            {"name": "redemptions", "description": "Spending points, and cancelling that"},
            {"name": "adjustments", "description": "Manual corrections by ops"},
            {"name": "actions", "description": "Check-ins and interactions that earn points"},
            {"name": "ledger", "description": "The append-only history of a member's points"},
        ],
    )
    install_erased_member_answers(app)  # a write naming an erased id: 409 member-erased
    app.state.rules_cache = RulesCache(settings.rules_cache_seconds)
    # POST /v1/orders; checkouts of one member take turns in-process (KeyedLocks), and what
    # a member's last checkout left makes the next one a single statement (OrderFactsCache)
    app.state.checkout = Checkout(
        lambda: app.state.engine,  # made by the lifespan
        settings,
        app.state.rules_cache,
        OrderFactsCache(settings.order_facts_members),
        KeyedLocks(),
    )
    app.state.checkouts = app.state.checkout.batches  # a burst for one member: batches
    # the bounds on client-given times (docs/security.md) and what they read
    app.state.time_bounds = TimeBounds.of(settings)
    app.state.enrolment_times = EnrolmentTimes()
    return app
