from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response

from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from webhooks.deliveries.handlers import SUBSCRIBABLE
from webhooks.settings import CurrentSettings
from webhooks.subscriptions import service
from webhooks.subscriptions.schemas import (
    EventTypesOut,
    PauseIn,
    RotateIn,
    SecretOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPage,
    SubscriptionPatch,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such subscription"}}
REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"description": "The URL is refused (scheme, address) or a type is unknown"}
}


@router.get(
    "/event-types",
    response_model=EventTypesOut,
    summary="The event types a subscription may ask for (their payloads: /asyncapi)",
)
async def event_types() -> EventTypesOut:
    return EventTypesOut(event_types=sorted(SUBSCRIBABLE))


@router.post(
    "",
    status_code=201,
    response_model=SubscriptionCreated,
    summary="Subscribe a URL to event types; the signing secret is in this answer only",
    responses=REFUSED,
)
async def create(
    body: SubscriptionIn, session: Session, settings: CurrentSettings, caller: CurrentCaller
) -> SubscriptionCreated:
    return await service.create(session, settings, body, caller.name)


@router.get("", response_model=SubscriptionPage, summary="Every subscription, oldest first")
async def list_subscriptions(session: Session) -> SubscriptionPage:
    return SubscriptionPage(items=await service.list_all(session))


@router.get(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    summary="One subscription (never its secret)",
    responses=NOT_FOUND,
)
async def get(subscription_id: str, session: Session) -> SubscriptionOut:
    return service.out(await service.get(session, subscription_id))


@router.patch(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    summary="Change the URL, the event types or the description",
    responses={**NOT_FOUND, **REFUSED},
)
async def update(
    subscription_id: str, body: SubscriptionPatch, session: Session, settings: CurrentSettings
) -> SubscriptionOut:
    return await service.update(session, settings, subscription_id, body)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    summary="Delete it with its log (its pending deliveries are never sent)",
    responses=NOT_FOUND,
)
async def delete(subscription_id: str, session: Session) -> Response:
    await service.delete(session, subscription_id)
    return Response(status_code=204)


@router.post(
    "/{subscription_id}/pause",
    response_model=SubscriptionOut,
    summary="Stop sending (events still queue for it, in order)",
    responses=NOT_FOUND,
)
async def pause(
    subscription_id: str, session: Session, caller: CurrentCaller, body: PauseIn | None = None
) -> SubscriptionOut:
    return await service.pause(session, subscription_id, body.reason if body else None, caller.name)


@router.post(
    "/{subscription_id}/resume",
    response_model=SubscriptionOut,
    summary="Send again: what queued while paused goes out now, in order",
    responses=NOT_FOUND,
)
async def resume(subscription_id: str, session: Session) -> SubscriptionOut:
    return await service.resume(session, subscription_id)


@router.post(
    "/{subscription_id}/rotate-secret",
    response_model=SecretOut,
    summary="A new signing secret; the old one signs as well during the overlap",
    responses=NOT_FOUND,
)
async def rotate_secret(
    subscription_id: str,
    session: Session,
    settings: CurrentSettings,
    body: RotateIn | None = None,
) -> SecretOut:
    return await service.rotate_secret(
        session, settings, subscription_id, body or RotateIn(), datetime.now(UTC)
    )
