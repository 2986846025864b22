"""Follow-up visits (回访): created by resolutions, schedules, churn signals and detractors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from feedback import events
from feedback.followups.models import FollowUp
from feedback.followups.schemas import AssignIn, FollowUpOut, FollowUpPage, OutcomeIn
from feedback.members.models import MemberProjection
from feedback.settings import FeedbackSettings
from loyalty_shared import cursors
from loyalty_shared.problems import Conflict, NotFound

POST_RESOLUTION = "post_resolution"
MONTHLY_HIGH_VALUE = "monthly_high_value"
CHURN_RISK = "churn_risk"
SURVEY_DETRACTOR = "survey_detractor"


class FollowUpNotFound(NotFound):
    slug = "follow-up-not-found"
    title = "Follow-up not found"


class FollowUpAlreadyCompleted(Conflict):
    slug = "follow-up-already-completed"
    title = "The follow-up already has an outcome"


def to_out(f: FollowUp) -> FollowUpOut:
    return FollowUpOut.model_validate(f, from_attributes=True)


async def ensure_follow_up(
    session: AsyncSession,
    *,
    member_id: str,
    reason: str,
    dedupe_key: str,
    due_at: datetime,
    now: datetime,
    owner_id: str | None = None,
    complaint_id: str | None = None,
    survey_response_id: str | None = None,
    trigger_score: int | None = None,
) -> str | None:
    """Create the follow-up for this trigger unless it exists; returns the new id or None."""
    new_id = str(uuid.uuid4())
    created = (
        await session.execute(
            insert(FollowUp)
            .values(
                id=new_id,
                member_id=member_id,
                reason=reason,
                dedupe_key=dedupe_key,
                complaint_id=complaint_id,
                survey_response_id=survey_response_id,
                trigger_score=trigger_score,
                due_at=due_at,
                owner_id=owner_id,
                status="pending",
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=[FollowUp.dedupe_key])
            .returning(FollowUp.id)
        )
    ).scalar_one_or_none()
    if created is not None:
        await events.publish(
            session,
            events.FOLLOW_UP_CREATED,
            member_id,
            {
                "follow_up_id": created,
                "member_id": member_id,
                "reason": reason,
                "complaint_id": complaint_id,
                "survey_response_id": survey_response_id,
                "due_at": due_at.isoformat(),
                "owner_id": owner_id,
            },
            time=now,
        )
    return created


async def get_follow_up(session: AsyncSession, follow_up_id: str) -> FollowUpOut:
    f = await session.get(FollowUp, follow_up_id)
    if f is None:
        raise FollowUpNotFound(f"No follow-up with id {follow_up_id!r}")
    return to_out(f)


async def assign(session: AsyncSession, follow_up_id: str, data: AssignIn) -> FollowUpOut:
    f = await session.get(FollowUp, follow_up_id, with_for_update=True)
    if f is None:
        raise FollowUpNotFound(f"No follow-up with id {follow_up_id!r}")
    if f.status == "completed":
        raise FollowUpAlreadyCompleted(
            f"Follow-up {f.id} already has an outcome", current_state=f.status
        )
    f.owner_id = data.owner_id
    await session.flush()
    return to_out(f)


async def record_outcome(
    session: AsyncSession, follow_up_id: str, data: OutcomeIn, actor: str, now: datetime
) -> FollowUpOut:
    f = await session.get(FollowUp, follow_up_id, with_for_update=True)
    if f is None:
        raise FollowUpNotFound(f"No follow-up with id {follow_up_id!r}")
    if f.status == "completed":
        raise FollowUpAlreadyCompleted(
            f"Follow-up {f.id} already has an outcome",
            current_state=f.status,
        )
    f.status = "completed"
    f.outcome = data.outcome
    f.rectified = data.rectified
    f.completed_at = now
    f.completed_by = actor
    if f.owner_id is None:
        f.owner_id = actor
    await session.flush()
    await events.publish(
        session,
        events.FOLLOW_UP_COMPLETED,
        f.member_id,
        {
            "follow_up_id": f.id,
            "member_id": f.member_id,
            "reason": f.reason,
            "complaint_id": f.complaint_id,
            "rectified": f.rectified,
            "completed_by": actor,
            "completed_at": now.isoformat(),
        },
        time=now,
    )
    return to_out(f)


async def link_next_answer(
    session: AsyncSession, member_id: str, response_id: str, score: int | None, now: datetime
) -> None:
    """Closed loop: the member's first survey answer after a completed follow-up is linked to it."""
    rows = (
        await session.execute(
            select(FollowUp)
            .where(
                FollowUp.member_id == member_id,
                FollowUp.status == "completed",
                FollowUp.next_response_id.is_(None),
                FollowUp.completed_at <= now,
            )
            .with_for_update()
        )
    ).scalars()
    for f in rows:
        f.next_response_id = response_id
        f.next_score = score


async def attach_complaint_survey(
    session: AsyncSession, complaint_id: str, response_id: str
) -> None:
    """A survey answered about a complaint is the result of its post-resolution follow-up."""
    await session.execute(
        update(FollowUp)
        .where(
            FollowUp.complaint_id == complaint_id,
            FollowUp.reason == POST_RESOLUTION,
            FollowUp.survey_response_id.is_(None),
        )
        .values(survey_response_id=response_id)
    )


async def list_follow_ups(
    session: AsyncSession,
    *,
    due_before: datetime | None,
    status: str | None,
    owner: str | None,
    member_id: str | None,
    reason: str | None,
    limit: int,
    cursor: str | None,
) -> FollowUpPage:
    """Soonest due first."""
    query = select(FollowUp).order_by(FollowUp.due_at, FollowUp.id)
    if due_before is not None:
        query = query.where(FollowUp.due_at < due_before)
    if status:
        query = query.where(FollowUp.status == status)
    if owner:
        query = query.where(FollowUp.owner_id == owner)
    if member_id:
        query = query.where(FollowUp.member_id == member_id)
    if reason:
        query = query.where(FollowUp.reason == reason)
    if cursor:
        due, fid = cursors.decode(cursor)
        query = query.where(tuple_(FollowUp.due_at, FollowUp.id) > tuple_(due, fid))
    rows = list((await session.execute(query.limit(limit + 1))).scalars())
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = cursors.encode(last.due_at, last.id) if last is not None else None
    return FollowUpPage(items=[to_out(f) for f in rows[:limit]], next_cursor=next_cursor)


def _month_end(now: datetime) -> datetime:
    first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1) - timedelta(microseconds=1)


async def schedule_monthly(session: AsyncSession, settings: FeedbackSettings, now: datetime) -> int:
    """One follow-up per high-value member per calendar month (UTC), due at the month's end."""
    month = now.astimezone(UTC).strftime("%Y-%m")
    tiers = [t.lower() for t in settings.high_value_tiers]
    members = (
        await session.execute(
            select(MemberProjection.member_id).where(
                or_(MemberProjection.value_tier == "high", MemberProjection.tier.in_(tiers))
            )
        )
    ).scalars()
    created = 0
    due = _month_end(now)
    for member_id in members:
        if await ensure_follow_up(
            session,
            member_id=member_id,
            reason=MONTHLY_HIGH_VALUE,
            dedupe_key=f"monthly:{member_id}:{month}",
            due_at=due,
            now=now,
        ):
            created += 1
    return created


def is_high_value(member: MemberProjection | None, settings: FeedbackSettings) -> bool:
    if member is None:
        return False
    tiers = {t.lower() for t in settings.high_value_tiers}
    return member.value_tier == "high" or (member.tier or "").lower() in tiers
