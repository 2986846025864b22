from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from loyalty_shared.db import Session
from webhooks.deliveries import service
from webhooks.deliveries.schemas import DeliveryDetail, DeliveryPage, DeliveryStatus, Queued
from webhooks.settings import CurrentSettings

router = APIRouter(prefix="/v1/webhooks/{subscription_id}", tags=["webhooks"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such subscription or delivery"}
}


@router.get(
    "/deliveries",
    response_model=DeliveryPage,
    summary="The delivery log of a subscription, newest first",
    responses=NOT_FOUND,
)
async def list_deliveries(
    subscription_id: str,
    session: Session,
    status: DeliveryStatus | None = None,
    event_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> DeliveryPage:
    return await service.list_deliveries(
        session,
        subscription_id,
        status=status.value if status else None,
        event_id=event_id,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    summary="One delivery: every attempt (time, status code, latency, error, next attempt)",
    responses=NOT_FOUND,
)
async def get_delivery(
    subscription_id: str, delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: Session
) -> DeliveryDetail:
    return await service.get_delivery(session, subscription_id, delivery_id)


@router.post(
    "/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=Queued,
    summary="Send a delivered or failed delivery again, now",
    responses={**NOT_FOUND, 409: {"description": "It is still pending"}},
)
async def retry(
    subscription_id: str,
    delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    session: Session,
    settings: CurrentSettings,
) -> Queued:
    return await service.retry(session, settings, subscription_id, delivery_id)


@router.post(
    "/test",
    status_code=202,
    response_model=Queued,
    summary="Send a loyalty.webhook.test.v1 event to this subscription",
    responses=NOT_FOUND,
)
async def send_test(subscription_id: str, session: Session, settings: CurrentSettings) -> Queued:
    return await service.send_test(session, settings, subscription_id)
