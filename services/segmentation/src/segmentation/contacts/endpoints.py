from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response

from loyalty_shared import erasure
from loyalty_shared.db import Session
from segmentation.contacts import service
from segmentation.contacts.schemas import (
    ContactCheckIn,
    ContactCheckOut,
    ContactIn,
    ContactOut,
    ContactPolicy,
    PreferencesIn,
    PreferencesOut,
)
from segmentation.settings import SegmentationSettings

router = APIRouter(tags=["contacts"])

MemberId = Annotated[str, Path(min_length=1, max_length=128)]


async def _refuse_erased(request: Request, session: Session, member_id: str, field: str) -> None:
    """409 ``member-erased``: a contact or a preference would bring the member's data back."""
    await erasure.refuse_if_erased(
        session, _settings(request).erasure_key(), member_id, field=field
    )


def _settings(request: Request) -> SegmentationSettings:
    settings: SegmentationSettings = request.app.state.settings
    return settings


@router.post(
    "/v1/contacts/check",
    response_model=ContactCheckOut,
    summary="May this member be contacted on this channel now (frequency cap, opt-outs)?",
)
async def check_contact(
    body: ContactCheckIn, request: Request, session: Session
) -> ContactCheckOut:
    await _refuse_erased(request, session, body.member_id, "body.member_id")
    return await service.check(session, _settings(request), body.member_id, body.channel, body.at)


@router.post(
    "/v1/contacts",
    status_code=201,
    response_model=ContactOut,
    responses={
        200: {"model": ContactOut, "description": "Already recorded: the existing contact"},
        409: {"description": "cap reached, channel opted out, or the member was erased"},
    },
    summary="Record a contact (refused with 409 when the policy does not allow it)",
)
async def record_contact(
    body: ContactIn,
    request: Request,
    response: Response,
    session: Session,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=64,
            description="Used as contact_id when the body has none: the same key and body "
            "give the recorded contact back (200); another body is 409",
        ),
    ] = None,
) -> ContactOut:
    await _refuse_erased(request, session, body.member_id, "body.member_id")
    out, created = await service.record(
        session,
        _settings(request),
        contact_id=body.contact_id or idempotency_key,
        member_id=body.member_id,
        channel=body.channel,
        campaign=body.campaign,
        contacted_at=body.contacted_at,
    )
    if not created:
        response.status_code = 200
    return out


@router.get("/v1/contact-policy", response_model=ContactPolicy, summary="The contact frequency cap")
async def get_policy(request: Request, session: Session) -> ContactPolicy:
    return await service.policy(session, _settings(request))


@router.put("/v1/contact-policy", response_model=ContactPolicy, summary="Change the frequency cap")
async def put_policy(body: ContactPolicy, session: Session) -> ContactPolicy:
    return await service.set_policy(session, body)


@router.get(
    "/v1/profiles/{member_id}/contact-preferences",
    response_model=PreferencesOut,
    summary="A member's channel preferences and opt-outs",
)
async def get_preferences(member_id: MemberId, session: Session) -> PreferencesOut:
    return await service.preferences(session, member_id)


@router.put(
    "/v1/profiles/{member_id}/contact-preferences",
    response_model=PreferencesOut,
    summary="Set a member's channel preferences and opt-outs",
)
async def put_preferences(
    member_id: MemberId, body: PreferencesIn, session: Session, request: Request
) -> PreferencesOut:
    await _refuse_erased(request, session, member_id, "path.member_id")
    return await service.set_preferences(
        session, member_id, list(body.preferred_channels), list(body.opted_out_channels)
    )
