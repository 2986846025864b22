from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, status

from feedback.clock import Now
from feedback.db import idempotency_keys
from feedback.settings import FeedbackSettings
from feedback.surveys import addressing, service
from feedback.surveys.schemas import (
    AddressedSurveyPage,
    InvitationsIn,
    InvitationsOut,
    ResponseIn,
    ResponseOut,
    SurveyIn,
    SurveyOut,
)
from loyalty_shared.caller import CurrentCaller
from loyalty_shared.db import Session
from loyalty_shared.idempotency import IdempotencyKey, once

router = APIRouter(prefix="/v1/surveys", tags=["surveys"])
# /v1/members/{member_id}/surveys (the gateway sends it here: routing.MEMBER_SUBRESOURCES)
member_router = APIRouter(prefix="/v1/members", tags=["surveys"])


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=SurveyOut, summary="Define a survey"
)
async def create_survey(body: SurveyIn, session: Session, now: Now) -> SurveyOut:
    return await service.create_survey(session, body, now)


@router.get("", response_model=list[SurveyOut], summary="Survey definitions, newest first")
async def list_surveys(
    session: Session, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[SurveyOut]:
    return await service.list_surveys(session, limit)


@router.get("/{survey_id}", response_model=SurveyOut, summary="A survey definition")
async def get_survey(survey_id: str, session: Session) -> SurveyOut:
    return await service.get_survey(session, survey_id)


@router.post(
    "/{survey_id}/responses",
    status_code=status.HTTP_201_CREATED,
    response_model=ResponseOut,
    summary="Answer a survey; answers are checked against the definition",
    description="A member token answers only a survey addressed to its member (its audience "
    "is every member, or the member was invited): any other is a 404 for it. The answer "
    "settles the member's pending invitation to the survey.",
    responses={
        404: {"description": "No such survey (for a member token: none addressed to it)"},
        409: {"description": "The member already answered (one response per member)"},
        422: {"description": "An answer does not fit its question (the error names it)"},
    },
)
async def submit_response(
    survey_id: str,
    body: ResponseIn,
    session: Session,
    request: Request,
    now: Now,
    idempotency_key: IdempotencyKey,
    caller: CurrentCaller,
) -> ResponseOut:
    settings: FeedbackSettings = request.app.state.settings

    async def answer() -> ResponseOut:
        survey = await service.survey_row(session, survey_id)
        if caller.is_member and not await addressing.is_addressed(session, survey, body.member_id):
            raise service.SurveyNotFound(f"No survey with id {survey_id!r}")
        response = await service.submit_response(session, settings, survey_id, body, now)
        await addressing.mark_answered(session, survey, response, now)
        return response

    return await once(
        session,
        idempotency_keys,
        "survey-response",
        idempotency_key,
        {"survey_id": survey_id, **body.model_dump(mode="json")},
        ResponseOut,
        answer,
    )


@router.post(
    "/{survey_id}/invitations",
    response_model=InvitationsOut,
    summary="Address the survey to members (ops): it shows in each one's app until answered",
    description="Each invitation may name the member's complaint or an order the survey is "
    "about. Inviting the same member about the same thing again while the invitation is "
    "pending changes nothing (`already_invited`).",
    responses={
        404: {"description": "No such survey"},
        409: {"description": "A member was erased (member-erased, naming the entries)"},
        422: {"description": "A complaint named is not that member's (unknown-complaint)"},
    },
)
async def invite(
    survey_id: str,
    body: InvitationsIn,
    session: Session,
    request: Request,
    now: Now,
    operator: Annotated[str | None, Header(alias="X-Operator-Id", max_length=128)] = None,
) -> InvitationsOut:
    settings: FeedbackSettings = request.app.state.settings
    await service.survey_row(session, survey_id)
    return await addressing.invite(
        session, settings.erasure_key(), survey_id, body, now, invited_by=operator
    )


@member_router.get(
    "/{member_id}/surveys",
    response_model=AddressedSurveyPage,
    summary="The surveys addressed to a member and not yet answered (its app's list)",
    description="Addressed: a survey for every member (audience `members`) or one the member "
    "was invited to. Not yet answered: an invitation the member has not answered, a `members` "
    "survey the member never answered. Most recently addressed first, cursor paged.",
    responses={422: {"description": "A cursor this API did not give, or a bad limit"}},
)
async def member_surveys(
    member_id: Annotated[str, Path(min_length=1, max_length=128)],
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> AddressedSurveyPage:
    return await addressing.pending_for(session, member_id, limit=limit, cursor=cursor)
