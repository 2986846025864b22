from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from feedback.clock import Now
from feedback.idempotency.endpoints import IdempotencyKey
from feedback.idempotency.service import once
from feedback.surveys import service
from feedback.surveys.schemas import ResponseIn, ResponseOut, SurveyIn, SurveyOut
from loyalty_shared.db import Session

router = APIRouter(prefix="/v1/surveys", tags=["surveys"])


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
    responses={
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
) -> ResponseOut:
    return await once(
        session,
        "survey-response",
        idempotency_key,
        {"survey_id": survey_id, **body.model_dump(mode="json")},
        ResponseOut,
        lambda: service.submit_response(session, request.app.state.settings, survey_id, body, now),
    )
