from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import Response
from pydantic import AwareDatetime

from loyalty_shared.db import Session
from points.campaigns import service
from points.campaigns.calculator import CampaignKind
from points.campaigns.schemas import (
    CampaignIn,
    CampaignOut,
    CampaignPage,
    CampaignPatch,
    CampaignPreviewIn,
    CampaignPreviewOut,
    CampaignReplace,
)
from points.db import Idempotency
from points.identifiers import ClientId

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

CampaignId = Annotated[ClientId, Path()]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such campaign"}}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid campaign (e.g. ends before it starts)"}
}


@router.get("", response_model=CampaignPage, summary="List campaigns (ops, storefront)")
async def list_campaigns(
    session: Session,
    active: Annotated[bool | None, Query(description="Filter on the active flag")] = None,
    running_at: Annotated[
        AwareDatetime | None, Query(description="Only campaigns running at this instant")
    ] = None,
    kind: Annotated[CampaignKind | None, Query()] = None,
    after: Annotated[str | None, Query(max_length=128, description="Cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CampaignPage:
    return await service.list_campaigns(
        session, active=active, running_at=running_at, kind=kind, after=after, limit=limit
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CampaignOut,
    summary="Create a campaign (ops; idempotent by campaign_id)",
    responses={
        200: {"description": "Same id and body already created", "model": CampaignOut},
        409: {"description": "campaign_id or Idempotency-Key already used with another body"},
        **_INVALID,
    },
)
async def create_campaign(
    body: CampaignIn, session: Session, idempotency: Idempotency, request: Request
) -> Response:
    async def produce() -> tuple[CampaignOut, int]:
        campaign, created = await service.create(session, body)
        request.app.state.rules_cache.invalidate()
        return campaign, status.HTTP_201_CREATED if created else status.HTTP_200_OK

    return await idempotency.run(session, body, produce)


@router.post(
    "/preview",
    response_model=CampaignPreviewOut,
    summary="Dry run: what the running campaigns would add to an order (ops); records nothing",
    responses={422: {"description": "Invalid order or unknown tier"}},
)
async def preview_campaigns(
    body: CampaignPreviewIn, session: Session, request: Request
) -> CampaignPreviewOut:
    return await service.preview(session, request.app.state.settings.earn_rate, body)


@router.get(
    "/{campaign_id}", response_model=CampaignOut, summary="One campaign", responses=_NOT_FOUND
)
async def get_campaign(campaign_id: CampaignId, session: Session) -> CampaignOut:
    return await service.get(session, campaign_id)


@router.put(
    "/{campaign_id}",
    response_model=CampaignOut,
    summary="Replace a campaign's definition (ops)",
    responses={**_NOT_FOUND, **_INVALID},
)
async def replace_campaign(
    campaign_id: CampaignId, body: CampaignReplace, session: Session, request: Request
) -> CampaignOut:
    out = await service.replace(session, campaign_id, body)
    request.app.state.rules_cache.invalidate()
    return out


@router.patch(
    "/{campaign_id}",
    response_model=CampaignOut,
    summary='Edit some fields of a campaign; {"active": false} deactivates it (ops)',
    responses={**_NOT_FOUND, **_INVALID},
)
async def patch_campaign(
    campaign_id: CampaignId, body: CampaignPatch, session: Session, request: Request
) -> CampaignOut:
    out = await service.patch(session, campaign_id, body)
    request.app.state.rules_cache.invalidate()
    return out
