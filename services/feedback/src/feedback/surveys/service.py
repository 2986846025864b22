"""Surveys: definitions, validated responses, the survey.completed event, the closed loop."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from feedback import events
from feedback.complaints import service as complaints
from feedback.complaints.models import Complaint
from feedback.complaints.schemas import Channel, ComplaintIn
from feedback.followups import service as follow_ups
from feedback.settings import FeedbackSettings
from feedback.surveys.models import Survey, SurveyAnswer, SurveyResponse
from feedback.surveys.schemas import (
    LIKERT5_LABELS,
    Metric,
    QuestionOut,
    QuestionType,
    ResponseIn,
    ResponseOut,
    SurveyIn,
    SurveyOut,
)
from loyalty_shared import erasure
from loyalty_shared.problems import Conflict, NotFound, Unprocessable

NPS_DETRACTOR_MAX = 6
CSAT_LOW_MAX = 2


class SurveyNotFound(NotFound):
    slug = "survey-not-found"
    title = "Survey not found"


class InvalidAnswers(Unprocessable):
    slug = "invalid-answers"
    title = "Answers do not fit the survey"


class AlreadyResponded(Conflict):
    slug = "already-responded"
    title = "The member has already answered this survey"


class UnknownComplaint(Unprocessable):
    slug = "unknown-complaint"
    title = "Unknown complaint"


def _normalised_questions(data: SurveyIn) -> list[dict[str, Any]]:
    questions = [q.model_dump(mode="json") for q in data.questions]
    for q in questions:
        if q["type"] == QuestionType.nps.value and q["metric"] is None:
            q["metric"] = Metric.nps.value
    if not any(q["metric"] == Metric.csat.value for q in questions):
        first_rating = next((q for q in questions if q["type"] == QuestionType.rating.value), None)
        if first_rating is not None:
            first_rating["metric"] = Metric.csat.value
    return questions


def _survey_out(s: Survey) -> SurveyOut:
    return SurveyOut(
        id=s.id,
        name=s.name,
        description=s.description,
        questions=[QuestionOut.model_validate(q) for q in s.questions],
        allow_multiple_responses=s.allow_multiple_responses,
        open_complaint_for_detractors=s.open_complaint_for_detractors,
        audience=s.audience,
        created_at=s.created_at,
    )


async def create_survey(session: AsyncSession, data: SurveyIn, now: datetime) -> SurveyOut:
    survey = Survey(
        id=str(uuid.uuid4()),
        name=data.name,
        description=data.description,
        questions=_normalised_questions(data),
        allow_multiple_responses=data.allow_multiple_responses,
        open_complaint_for_detractors=data.open_complaint_for_detractors,
        audience=data.audience,
        created_at=now,
    )
    session.add(survey)
    await session.flush()
    return _survey_out(survey)


async def list_surveys(session: AsyncSession, limit: int) -> list[SurveyOut]:
    rows = (
        await session.execute(
            select(Survey).order_by(Survey.created_at.desc(), Survey.id.desc()).limit(limit)
        )
    ).scalars()
    return [_survey_out(s) for s in rows]


async def survey_row(session: AsyncSession, survey_id: str) -> Survey:
    survey = await session.get(Survey, survey_id)
    if survey is None:
        raise SurveyNotFound(f"No survey with id {survey_id!r}")
    return survey


async def get_survey(session: AsyncSession, survey_id: str) -> SurveyOut:
    return _survey_out(await survey_row(session, survey_id))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(question: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    """(normalised value, error message or None) for one answer."""
    kind = question["type"]
    if kind == QuestionType.likert5.value:
        if isinstance(value, str) and value in LIKERT5_LABELS:
            return LIKERT5_LABELS.index(value) + 1, None
        if _is_int(value) and 1 <= value <= 5:
            return value, None
        return None, f"a 5-level answer: 1-5 or one of {', '.join(LIKERT5_LABELS)}"
    if kind == QuestionType.nps.value:
        if _is_int(value) and 0 <= value <= 10:
            return value, None
        return None, "an NPS answer is a whole number from 0 to 10"
    if kind == QuestionType.rating.value:
        if _is_int(value) and 1 <= value <= 5:
            return value, None
        return None, "a rating is a whole number from 1 to 5"
    if kind == QuestionType.single_choice.value:
        if isinstance(value, str) and value in question["options"]:
            return value, None
        return None, f"one of the options: {', '.join(question['options'])}"
    if kind == QuestionType.multiple_choice.value:
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, str) and v in question["options"] for v in value)
            and len(set(value)) == len(value)
        ):
            return value, None
        return None, f"a non-empty list of distinct options from: {', '.join(question['options'])}"
    if isinstance(value, str) and len(value.strip()) > 0 and len(value) <= 5000:
        return value, None
    return None, "free text of 1 to 5000 characters"


def validate_answers(questions: list[dict[str, Any]], answers: dict[str, Any]) -> dict[str, Any]:
    """The answers normalised; every problem is reported at once, each naming its question."""
    by_id = {q["id"]: q for q in questions}
    errors: list[dict[str, str]] = []
    clean: dict[str, Any] = {}
    for qid in answers:
        if qid not in by_id:
            errors.append(
                {"field": f"body.answers.{qid}", "message": "no such question", "type": "unknown"}
            )
    for q in questions:
        value = answers.get(q["id"])
        if value is None:
            if q["required"]:
                errors.append(
                    {
                        "field": f"body.answers.{q['id']}",
                        "message": "this question is required",
                        "type": "missing",
                    }
                )
            continue
        normalised, problem = _check(q, value)
        if problem is not None:
            errors.append(
                {
                    "field": f"body.answers.{q['id']}",
                    "message": f"expected {problem}, got {value!r}"[:300],
                    "type": "invalid_answer",
                }
            )
        else:
            clean[q["id"]] = normalised
    if errors:
        names = ", ".join(e["field"].removeprefix("body.answers.") for e in errors)
        raise InvalidAnswers(
            f"{len(errors)} answer(s) do not fit the survey: {names}", errors=errors
        )
    return clean


async def submit_response(
    session: AsyncSession,
    settings: FeedbackSettings,
    survey_id: str,
    data: ResponseIn,
    now: datetime,
) -> ResponseOut:
    """Validate and store a member's answers, link them to follow-ups, close the loop on a
    low score (a complaint if the survey says so, a follow-up) and publish survey.completed."""
    survey = await session.get(Survey, survey_id)
    if survey is None:
        raise SurveyNotFound(f"No survey with id {survey_id!r}")
    await erasure.refuse_if_erased(
        session, settings.erasure_key(), data.member_id, field="body.member_id"
    )
    answers = validate_answers(survey.questions, data.answers)
    complaint = await _linked_complaint(session, data)
    once_key = None if survey.allow_multiple_responses else f"{survey.id}:{data.member_id}"
    await _refuse_second_response(session, survey, data, once_key)
    response = await _store_response(session, survey, data, answers, once_key, now)
    nps, csat = response.nps, response.csat
    score = nps if nps is not None else csat
    await follow_ups.link_next_answer(session, data.member_id, response.id, score, now)
    if data.complaint_id is not None:
        await follow_ups.attach_complaint_survey(session, data.complaint_id, response.id)
    follow_up_id, opened_complaint_id = await _close_the_loop(
        session, settings, survey, data, response, complaint, now
    )
    await _publish_completed(session, survey, data, response, now)
    return ResponseOut(
        id=response.id,
        survey_id=survey.id,
        member_id=data.member_id,
        complaint_id=data.complaint_id,
        order_id=data.order_id,
        answers=answers,
        nps=nps,
        csat=csat,
        submitted_at=now,
        follow_up_id=follow_up_id,
        opened_complaint_id=opened_complaint_id,
    )


async def _linked_complaint(session: AsyncSession, data: ResponseIn) -> Complaint | None:
    """The member's complaint the answers are about (None if none named); 422 if unknown."""
    if data.complaint_id is None:
        return None
    complaint = await session.get(Complaint, data.complaint_id)
    if complaint is None or complaint.member_id != data.member_id:
        raise UnknownComplaint(
            f"No complaint {data.complaint_id!r} for member {data.member_id!r}",
            errors=[
                {
                    "field": "body.complaint_id",
                    "message": "unknown complaint",
                    "type": "unknown",
                }
            ],
        )
    return complaint


async def _refuse_second_response(
    session: AsyncSession, survey: Survey, data: ResponseIn, once_key: str | None
) -> None:
    """409 if the survey takes one response per member and this member has given it."""
    if once_key is None:
        return
    existing = (
        await session.execute(select(SurveyResponse.id).where(SurveyResponse.once_key == once_key))
    ).scalar_one_or_none()
    if existing is not None:
        raise AlreadyResponded(
            f"Member {data.member_id} already answered survey {survey.id}",
            response_id=existing,
        )


async def _store_response(
    session: AsyncSession,
    survey: Survey,
    data: ResponseIn,
    answers: dict[str, Any],
    once_key: str | None,
    now: datetime,
) -> SurveyResponse:
    """The response (its NPS and CSAT read from the questions' metrics) and one row per
    answer; 409 if a concurrent duplicate took ``once_key`` first."""
    metric_of = {q["id"]: q.get("metric") for q in survey.questions}
    nps = next((v for k, v in answers.items() if metric_of[k] == Metric.nps.value), None)
    csat = next((v for k, v in answers.items() if metric_of[k] == Metric.csat.value), None)
    response = SurveyResponse(
        id=str(uuid.uuid4()),
        survey_id=survey.id,
        member_id=data.member_id,
        once_key=once_key,
        complaint_id=data.complaint_id,
        order_id=data.order_id,
        answers=answers,
        nps=nps,
        csat=csat,
        submitted_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(response)
            await session.flush()
    except IntegrityError as exc:  # a concurrent duplicate lost the race on once_key
        raise AlreadyResponded(
            f"Member {data.member_id} already answered survey {survey.id}"
        ) from exc
    by_id = {q["id"]: q for q in survey.questions}
    session.add_all(
        [
            SurveyAnswer(
                response_id=response.id,
                question_id=qid,
                survey_id=survey.id,
                type=by_id[qid]["type"],
                metric=by_id[qid].get("metric"),
                factor=by_id[qid].get("factor"),
                value=value if _is_int(value) else None,
                submitted_at=now,
            )
            for qid, value in answers.items()
        ]
    )
    return response


async def _close_the_loop(
    session: AsyncSession,
    settings: FeedbackSettings,
    survey: Survey,
    data: ResponseIn,
    response: SurveyResponse,
    complaint: Complaint | None,
    now: datetime,
) -> tuple[str | None, str | None]:
    """A detractor's NPS or a low CSAT: a complaint (if the survey opens one) and a
    follow-up. Returns (follow-up id, opened complaint id), both None for a happy member."""
    nps, csat = response.nps, response.csat
    detractor = nps is not None and nps <= NPS_DETRACTOR_MAX
    unhappy = csat is not None and csat <= CSAT_LOW_MAX
    if not (detractor or unhappy):
        return None, None
    opened_complaint_id: str | None = None
    if survey.open_complaint_for_detractors:
        scores = ", ".join(
            f"{name} {value}" for name, value in (("NPS", nps), ("CSAT", csat)) if value is not None
        )
        opened = await complaints.open_complaint(
            session,
            settings,
            ComplaintIn(
                member_id=data.member_id,
                channel=Channel.app,
                category="survey_detractor",
                description=f"Low score in survey {survey.name!r}: {scores}",
                order_id=data.order_id,
            ),
            now,
            opened_by=f"survey:{survey.id}",
        )
        opened_complaint_id = opened.id
    follow_up_id = await follow_ups.ensure_follow_up(
        session,
        member_id=data.member_id,
        reason=follow_ups.SURVEY_DETRACTOR,
        dedupe_key=f"survey:{response.id}",
        due_at=now + timedelta(days=settings.follow_up_after_detractor_days),
        now=now,
        owner_id=complaint.owner_id if complaint else None,
        complaint_id=opened_complaint_id or data.complaint_id,
        survey_response_id=response.id,
        trigger_score=nps if detractor else csat,
    )
    return follow_up_id, opened_complaint_id


async def _publish_completed(
    session: AsyncSession,
    survey: Survey,
    data: ResponseIn,
    response: SurveyResponse,
    now: datetime,
) -> None:
    await events.publish(
        session,
        events.SURVEY_COMPLETED,
        data.member_id,
        {
            "survey_id": survey.id,
            "response_id": response.id,
            "member_id": data.member_id,
            "nps": response.nps,
            "csat": response.csat,
            "complaint_id": data.complaint_id,
            "order_id": data.order_id,
            "submitted_at": now.isoformat(),
        },
        event_id=response.id,
        time=now,
    )
