from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from feedback.clock import Now
from feedback.sla import service
from feedback.sla.schemas import CalendarIn, CalendarOut, SlaPolicyIn, SlaPolicyOut
from loyalty_shared.db import Session

router = APIRouter(prefix="/v1/sla", tags=["sla"])

SLUG = r"^[a-z0-9][a-z0-9_\-]*$"
PolicyId = Annotated[str, Path(min_length=1, max_length=64, pattern=SLUG)]
CalendarId = Annotated[str, Path(min_length=1, max_length=64, pattern=SLUG)]


@router.get("/policies", response_model=list[SlaPolicyOut], summary="SLA policies (data)")
async def list_policies(session: Session) -> list[SlaPolicyOut]:
    return await service.list_policies(session)


@router.put(
    "/policies/{policy_id}",
    response_model=SlaPolicyOut,
    summary="Create or replace an SLA policy; applies to complaints opened from now on",
    responses={
        200: {"description": "Replaced"},
        201: {"model": SlaPolicyOut, "description": "Created"},
    },
)
async def put_policy(
    policy_id: PolicyId, body: SlaPolicyIn, session: Session, response: Response, now: Now
) -> SlaPolicyOut:
    out, created = await service.put_policy(session, policy_id, body, now)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return out


@router.get("/calendars", response_model=list[CalendarOut], summary="Business-hours calendars")
async def list_calendars(session: Session) -> list[CalendarOut]:
    return await service.list_calendars(session)


@router.put(
    "/calendars/{calendar_id}",
    response_model=CalendarOut,
    summary="Create or replace a business-hours calendar (timezone, weekly hours, holidays)",
    responses={
        200: {"description": "Replaced"},
        201: {"model": CalendarOut, "description": "Created"},
    },
)
async def put_calendar(
    calendar_id: CalendarId, body: CalendarIn, session: Session, response: Response, now: Now
) -> CalendarOut:
    out, created = await service.put_calendar(session, calendar_id, body, now)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return out
