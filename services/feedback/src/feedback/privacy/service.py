"""Erasure (on loyalty.member.erased.v1) and export of what feedback holds about a member.

Erasure removes what identifies or describes the member (complaint descriptions,
agents' notes, follow-up outcomes, free-text and choice answers, the tier
projection, survey invitations, remembered idempotent answers). The facts the metrics count
(complaint times and causes, breaches, scores) are kept under a random pseudonym
that nothing links back to the member, so NPS, CSAT, FCR and SLA compliance
stay right.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.complaints.models import Complaint, ComplaintAction
from feedback.db import idempotency_keys
from feedback.followups.models import FollowUp
from feedback.members.models import MemberProjection
from feedback.orders.models import OrderFact
from feedback.sla.models import SlaBreach
from feedback.surveys.models import SurveyInvitation, SurveyResponse
from loyalty_shared import idempotency

ERASED = "[erased]"


async def erase_member(session: AsyncSession, member_id: str) -> str:
    """Returns the pseudonym the member's anonymous facts now carry."""
    pseudonym = f"erased-{uuid.uuid4().hex}"
    complaint_ids = select(Complaint.id).where(Complaint.member_id == member_id)
    await session.execute(
        update(ComplaintAction)
        .where(ComplaintAction.complaint_id.in_(complaint_ids))
        .values(
            note=None,
            actor=case(
                (ComplaintAction.actor == f"member:{member_id}", f"member:{pseudonym}"),
                else_=ComplaintAction.actor,
            ),
        )
    )
    await session.execute(
        update(Complaint)
        .where(Complaint.member_id == member_id)
        .values(
            member_id=pseudonym,
            description=ERASED,
            order_id=None,
            product_ref=None,
        )
    )
    for model in (SlaBreach, OrderFact):
        await session.execute(
            update(model).where(model.member_id == member_id).values(member_id=pseudonym)
        )
    await session.execute(
        update(FollowUp)
        .where(FollowUp.member_id == member_id)
        .values(
            member_id=pseudonym,
            outcome=case((FollowUp.outcome.is_(None), None), else_=ERASED),
            dedupe_key=func.replace(FollowUp.dedupe_key, member_id, pseudonym),
        )
    )
    # keep numeric answers (the scores the metrics count), drop text and choices
    await session.execute(
        text(
            "UPDATE survey_responses SET member_id = CAST(:p AS varchar), order_id = NULL, "
            "once_key = CASE WHEN once_key IS NULL THEN NULL "
            "ELSE CAST(:p AS varchar) || ':' || id END, "
            "answers = coalesce((SELECT jsonb_object_agg(k, v) FROM jsonb_each(answers) AS e(k, v) "
            "WHERE jsonb_typeof(v) = 'number'), '{}'::jsonb) WHERE member_id = :m"
        ),
        {"p": pseudonym, "m": member_id},
    )
    await idempotency.forget_member(session, idempotency_keys, member_id)
    await session.execute(delete(MemberProjection).where(MemberProjection.member_id == member_id))
    await session.execute(delete(SurveyInvitation).where(SurveyInvitation.member_id == member_id))
    return pseudonym


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns if c.key not in skip}


async def export_member(session: AsyncSession, member_id: str) -> dict[str, Any] | None:
    complaints = list(
        (
            await session.execute(
                select(Complaint)
                .where(Complaint.member_id == member_id)
                .order_by(Complaint.created_at)
            )
        ).scalars()
    )
    actions = list(
        (
            await session.execute(
                select(ComplaintAction)
                .where(ComplaintAction.complaint_id.in_([c.id for c in complaints]))
                .order_by(ComplaintAction.at, ComplaintAction.id)
            )
        ).scalars()
    )
    follow_ups = list(
        (
            await session.execute(
                select(FollowUp).where(FollowUp.member_id == member_id).order_by(FollowUp.due_at)
            )
        ).scalars()
    )
    responses = list(
        (
            await session.execute(
                select(SurveyResponse)
                .where(SurveyResponse.member_id == member_id)
                .order_by(SurveyResponse.submitted_at)
            )
        ).scalars()
    )
    orders = list(
        (
            await session.execute(
                select(OrderFact)
                .where(OrderFact.member_id == member_id)
                .order_by(OrderFact.occurred_at)
            )
        ).scalars()
    )
    invitations = list(
        (
            await session.execute(
                select(SurveyInvitation)
                .where(SurveyInvitation.member_id == member_id)
                .order_by(SurveyInvitation.invited_at, SurveyInvitation.id)
            )
        ).scalars()
    )
    projection = await session.get(MemberProjection, member_id)
    if not (complaints or follow_ups or responses or projection or orders or invitations):
        return None
    history: dict[str, list[dict[str, Any]]] = {}
    for a in actions:
        history.setdefault(a.complaint_id, []).append(_row(a, ("id", "complaint_id")))
    return {
        "member_id": member_id,
        "projection": _row(projection, ("member_id",)) if projection else None,
        "complaints": [
            {**_row(c, ("member_id",)), "history": history.get(c.id, [])} for c in complaints
        ],
        "follow_ups": [_row(f, ("member_id", "dedupe_key")) for f in follow_ups],
        "survey_responses": [_row(r, ("member_id", "once_key")) for r in responses],
        "survey_invitations": [_row(i, ("member_id", "dedupe_key")) for i in invitations],
        "orders": [_row(o, ("member_id",)) for o in orders],
    }
