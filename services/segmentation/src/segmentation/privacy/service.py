"""Erasure (on loyalty.member.erased.v1) and export of what this service holds about a member.

Erasure deletes the profile, tags, segment memberships and history, contacts
and preferences. Facts that feed anonymous aggregates (orders, refunds,
activities, tier history, survey scores, complaint facts) are kept under a
random pseudonym that nothing links back to the member, so revenue, repurchase,
participation, NPS and complaint KPIs stay right.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from segmentation.analytics.models import ComplaintFact, SurveyScore
from segmentation.contacts.models import Contact, ContactPreference
from segmentation.profiles.models import (
    MemberActivity,
    MemberOrder,
    OrderRefund,
    Profile,
    TierChange,
)
from segmentation.segments.models import Segment, SegmentHistory, SegmentMember


async def erase_member(session: AsyncSession, member_id: str) -> None:
    pseudonym = f"erased-{uuid.uuid4().hex}"
    kept = (MemberOrder, OrderRefund, MemberActivity, TierChange, SurveyScore, ComplaintFact)
    for model in kept:
        await session.execute(
            update(model).where(model.member_id == member_id).values(member_id=pseudonym)
        )
    left = (
        (
            await session.execute(
                delete(SegmentMember)
                .where(SegmentMember.member_id == member_id)
                .returning(SegmentMember.segment_id)
            )
        )
        .scalars()
        .all()
    )
    for segment_id in left:
        await session.execute(
            update(Segment)
            .where(Segment.segment_id == segment_id)
            .values(member_count=func.greatest(Segment.member_count - 1, 0))
        )
    for owned in (SegmentHistory, Contact, ContactPreference, Profile):
        await session.execute(delete(owned).where(owned.member_id == member_id))


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns if c.key not in skip}


async def export_member(session: AsyncSession, member_id: str) -> dict[str, Any] | None:
    profile = await session.get(Profile, member_id)
    orders = (
        (
            await session.execute(
                select(MemberOrder)
                .where(MemberOrder.member_id == member_id)
                .order_by(MemberOrder.occurred_at)
            )
        )
        .scalars()
        .all()
    )
    if profile is None and not orders:
        return None

    async def rows(model: Any, order: Any) -> list[dict[str, Any]]:
        result = await session.execute(
            select(model).where(model.member_id == member_id).order_by(order)
        )
        return [_row(r, ("member_id",)) for r in result.scalars()]

    return {
        "member_id": member_id,
        "profile": _row(profile) if profile is not None else None,
        "orders": [_row(o, ("member_id",)) for o in orders],
        "refunds": await rows(OrderRefund, OrderRefund.occurred_at),
        "activities": await rows(MemberActivity, MemberActivity.occurred_at),
        "tier_history": await rows(TierChange, TierChange.changed_at),
        "survey_scores": await rows(SurveyScore, SurveyScore.submitted_at),
        "complaints": await rows(ComplaintFact, ComplaintFact.opened_at),
        "segments": await rows(SegmentMember, SegmentMember.entered_at),
        "segment_history": await rows(SegmentHistory, SegmentHistory.at),
        "contacts": await rows(Contact, Contact.contacted_at),
        "contact_preferences": await rows(ContactPreference, ContactPreference.member_id),
    }
