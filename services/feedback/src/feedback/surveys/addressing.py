"""Which surveys are addressed to a member, and which of them are still to answer.

A survey is addressed to a member when its audience is ``members`` (every member: the app's
standing satisfaction survey), or when ops invited the member to it
(``POST /v1/surveys/{id}/invitations``, about a complaint, an order or neither: a follow-up
after a resolution, a survey after a purchase, a panel). An invitation is pending until the
member answers the survey; a ``members`` survey until the member has answered it once; a
survey that takes one answer per member is never pending again once answered.

A member token lists the pending ones (``GET /v1/members/{id}/surveys``) and answers only
surveys addressed to it: any other survey does not exist for it (404). Storefronts and ops
still record any answer (a shop that collected it itself).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, literal, null, or_, select, tuple_, union_all
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.complaints.models import Complaint
from feedback.surveys.models import Survey, SurveyInvitation, SurveyResponse
from feedback.surveys.schemas import (
    AddressedQuestion,
    AddressedSurvey,
    AddressedSurveyPage,
    InvitationsIn,
    InvitationsOut,
    ResponseOut,
)
from loyalty_shared import cursors, erasure
from loyalty_shared.problems import Unprocessable

MEMBERS = "members"


class UnknownComplaint(Unprocessable):
    slug = "unknown-complaint"
    title = "Unknown complaint"


def _dedupe_key(survey_id: str, member_id: str, complaint: str | None, order: str | None) -> str:
    return f"{survey_id}|{member_id}|{complaint or ''}|{order or ''}"


async def _check_complaints(session: AsyncSession, data: InvitationsIn) -> None:
    """Each complaint named must be its invitation's member's (422 naming the entry)."""
    named = {i.complaint_id for i in data.invitations if i.complaint_id is not None}
    rows = await session.execute(
        select(Complaint.id, Complaint.member_id).where(Complaint.id.in_(named))
    )
    owners = {row.id: row.member_id for row in rows}
    errors = [
        {
            "field": f"body.invitations.{n}.complaint_id",
            "message": f"no complaint {i.complaint_id!r} of member {i.member_id!r}",
            "type": "unknown",
        }
        for n, i in enumerate(data.invitations)
        if i.complaint_id is not None and owners.get(i.complaint_id) != i.member_id
    ]
    if errors:
        raise UnknownComplaint(
            f"{len(errors)} invitation(s) name an unknown complaint", errors=errors
        )


async def invite(
    session: AsyncSession,
    erasure_key: str,
    survey_id: str,
    data: InvitationsIn,
    now: datetime,
    invited_by: str | None,
) -> InvitationsOut:
    """Address the survey to each member (idempotent: a pending invitation is kept)."""
    erased = await erasure.erased_among(
        session, erasure_key, (i.member_id for i in data.invitations)
    )
    if erased:
        raise erasure.MemberErased(
            "Erased members cannot be invited; nothing more is recorded about them",
            errors=[
                {"field": f"body.invitations.{n}.member_id", "message": "member was erased"}
                for n, i in enumerate(data.invitations)
                if i.member_id in erased
            ],
        )
    await _check_complaints(session, data)
    invited = 0
    for i in data.invitations:
        created = (
            await session.execute(
                insert(SurveyInvitation)
                .values(
                    id=str(uuid.uuid4()),
                    survey_id=survey_id,
                    member_id=i.member_id,
                    complaint_id=i.complaint_id,
                    order_id=i.order_id,
                    dedupe_key=_dedupe_key(survey_id, i.member_id, i.complaint_id, i.order_id),
                    invited_at=now,
                    invited_by=invited_by,
                )
                .on_conflict_do_nothing(
                    index_elements=[SurveyInvitation.dedupe_key],
                    index_where=SurveyInvitation.answered_response_id.is_(None),
                )
                .returning(SurveyInvitation.id)
            )
        ).scalar_one_or_none()
        invited += created is not None
    return InvitationsOut(invited=invited, already_invited=len(data.invitations) - invited)


async def is_addressed(session: AsyncSession, survey: Survey, member_id: str) -> bool:
    if survey.audience == MEMBERS:
        return True
    found = await session.execute(
        select(SurveyInvitation.id)
        .where(SurveyInvitation.survey_id == survey.id, SurveyInvitation.member_id == member_id)
        .limit(1)
    )
    return found.first() is not None


async def mark_answered(
    session: AsyncSession, survey: Survey, response: ResponseOut, now: datetime
) -> None:
    """The answer settles the member's pending invitation to the survey (the one about the same
    complaint and order first); all of them when the survey takes one answer per member."""
    pending = [
        SurveyInvitation.survey_id == survey.id,
        SurveyInvitation.member_id == response.member_id,
        SurveyInvitation.answered_response_id.is_(None),
    ]
    query = select(SurveyInvitation).where(*pending).with_for_update()
    if survey.allow_multiple_responses:
        same_subject = and_(
            SurveyInvitation.complaint_id.is_not_distinct_from(response.complaint_id),
            SurveyInvitation.order_id.is_not_distinct_from(response.order_id),
        )
        query = query.order_by(
            same_subject.desc(), SurveyInvitation.invited_at, SurveyInvitation.id
        ).limit(1)
    for invitation in (await session.execute(query)).scalars():
        invitation.answered_response_id = response.id
        invitation.answered_at = now
    await session.flush()


def _answered(member_id: str) -> ColumnElement[bool]:
    return exists().where(
        SurveyResponse.survey_id == Survey.id, SurveyResponse.member_id == member_id
    )


async def pending_for(
    session: AsyncSession, member_id: str, *, limit: int, cursor: str | None
) -> AddressedSurveyPage:
    """The surveys addressed to the member and not yet answered, most recently addressed first."""
    invited = (
        select(
            Survey.id.label("survey_id"),
            SurveyInvitation.id.label("key"),
            SurveyInvitation.invited_at.label("addressed_at"),
            SurveyInvitation.complaint_id.label("complaint_id"),
            SurveyInvitation.order_id.label("order_id"),
        )
        .join(Survey, Survey.id == SurveyInvitation.survey_id)
        .where(
            SurveyInvitation.member_id == member_id,
            SurveyInvitation.answered_response_id.is_(None),
            or_(Survey.allow_multiple_responses.is_(True), ~_answered(member_id)),
        )
    )
    invitation_pending = exists().where(
        SurveyInvitation.survey_id == Survey.id,
        SurveyInvitation.member_id == member_id,
        SurveyInvitation.answered_response_id.is_(None),
    )
    everyone = select(
        Survey.id.label("survey_id"),
        Survey.id.label("key"),
        Survey.created_at.label("addressed_at"),
        null().label("complaint_id"),
        null().label("order_id"),
    ).where(Survey.audience == literal(MEMBERS), ~_answered(member_id), ~invitation_pending)
    rows = union_all(invited, everyone).subquery()
    query = select(rows).order_by(rows.c.addressed_at.desc(), rows.c.key.desc())
    if cursor:
        at, key = cursors.decode(cursor)
        query = query.where(tuple_(rows.c.addressed_at, rows.c.key) < tuple_(at, key))
    found = list((await session.execute(query.limit(limit + 1))).all())
    page = found[:limit]
    surveys = {
        s.id: s
        for s in (
            await session.execute(select(Survey).where(Survey.id.in_({r.survey_id for r in page})))
        ).scalars()
    }
    last = page[-1] if len(found) > limit else None
    return AddressedSurveyPage(
        items=[
            AddressedSurvey(
                survey_id=r.survey_id,
                name=surveys[r.survey_id].name,
                description=surveys[r.survey_id].description,
                questions=[
                    AddressedQuestion.model_validate(
                        {k: q.get(k) for k in AddressedQuestion.model_fields}
                    )
                    for q in surveys[r.survey_id].questions
                ],
                addressed_at=r.addressed_at,
                complaint_id=r.complaint_id,
                order_id=r.order_id,
            )
            for r in page
        ],
        next_cursor=cursors.encode(last.addressed_at, last.key) if last is not None else None,
    )
