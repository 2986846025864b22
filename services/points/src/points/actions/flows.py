"""Check-ins and interactions: the action rules wired to the ledger (docs/points-rules.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.caller import INTERNAL, Caller
from loyalty_shared.contracts.points import MemberCheckedInV1
from loyalty_shared.problems import Conflict
from loyalty_shared.replays import fingerprint, stored_answer
from points import events
from points.actions import limits
from points.actions.credit import (
    ActionMember,
    earn_for_action,
    lock_action_member,
    require_action_member,
)
from points.actions.models import check_ins, interactions
from points.actions.schemas import CheckInIn, CheckInOut, InteractionIn, InteractionOut
from points.actions.service import (
    action_for_interaction,
    check_in_key,
    interaction_key,
    local_day,
)
from points.client_times import TimeBounds, chosen_by_member
from points.errors import IdempotencyConflict, UnknownMember
from points.rules_cache import RulesCache
from points.settings import PointsSettings
from points.tiers.service import load_ladder


class AlreadyCheckedIn(Conflict):
    slug = "already-checked-in"
    title = "Already checked in today"


async def check_in(
    session: AsyncSession,
    settings: PointsSettings,
    cache: RulesCache | None,
    member_id: str,
    data: CheckInIn,
    *,
    now: datetime | None = None,
    caller: Caller = INTERNAL,
) -> CheckInOut:
    """Once per member and local day; a given ``occurred_at`` is bounded (``client_times``),
    and a member token may not give one at all."""
    if data.occurred_at is not None and caller.is_member:
        raise chosen_by_member()
    now = now or datetime.now(UTC)
    at = data.occurred_at or now
    member = await require_action_member(session, member_id)
    if data.occurred_at is not None:
        TimeBounds.of(settings).check(at, now, enrolled_at=member.enrolled_at)
    ladder = await cache.ladder(session, at) if cache else await load_ladder(session)
    day = local_day(at, member.timezone)
    claimed = (
        await session.execute(
            insert(check_ins)
            .values(member_id=member_id, local_day=day, occurred_at=at, points=0, reason="")
            .on_conflict_do_nothing()
            .returning(check_ins.c.member_id)
        )
    ).first()
    if claimed is None:
        raise AlreadyCheckedIn(
            f"Member {member_id!r} already checked in on {day.isoformat()} ({member.timezone})",
            member_id=member_id,
            local_day=day.isoformat(),
        )
    earned = await earn_for_action(
        session,
        settings,
        ladder,
        member,
        action="check_in",
        key=check_in_key(member_id, at, member.timezone),
        source_id=day.isoformat(),
        at=at,
    )
    await session.execute(
        check_ins.update()
        .where(check_ins.c.member_id == member_id, check_ins.c.local_day == day)
        .values(points=earned.points, reason=earned.reason)
    )
    # the check-in itself, whatever it earned (segmentation's 360 profile counts them)
    checked_in = MemberCheckedInV1(
        member_id=member_id, local_day=day, occurred_at=at, points=earned.points
    )
    await events.publish(session, checked_in.event(member_id, time=at))
    return CheckInOut(
        member_id=member_id,
        local_day=day,
        points=earned.points,
        reason=earned.reason,
        balance_available=earned.balance_available,
    )


async def _existing(
    session: AsyncSession, data: InteractionIn, digest: str
) -> InteractionOut | None:
    """The stored answer for an event id sent before (409 for another body); None if new."""
    return await stored_answer(
        session,
        interactions.c.event_id == data.event_id,
        interactions,
        digest,
        InteractionOut,
        lambda: IdempotencyConflict(
            f"Interaction {data.event_id!r} was already recorded with a different body",
            event_id=data.event_id,
        ),
    )


async def record_interaction(
    session: AsyncSession,
    settings: PointsSettings,
    cache: RulesCache | None,
    data: InteractionIn,
    *,
    now: datetime | None = None,
) -> InteractionOut:
    """Once per event id: the earning rule of its type (with caps) and an interaction event.

    Bounded first (docs/security.md): the attributes' size, the time (``client_times``),
    and how many interactions one member records per local day: over that limit the
    interaction is answered without being recorded or published, saying why.
    """
    limits.check_attributes(data, settings)
    now = now or datetime.now(UTC)
    digest = fingerprint(data.model_dump(mode="json"))
    member = await lock_action_member(session, data.member_id)
    if member is None:
        raise UnknownMember(
            f"Member {data.member_id!r} is not enrolled",
            member_id=data.member_id,
            errors=[{"field": "body.member_id", "message": "member is not enrolled"}],
        )
    TimeBounds.of(settings).check(data.occurred_at, now, enrolled_at=member.enrolled_at)
    replay = await _existing(session, data, digest)
    if replay is not None:
        return replay
    if await limits.day_is_full(session, settings, member, data.occurred_at):
        return InteractionOut(
            event_id=data.event_id,
            member_id=data.member_id,
            type=data.type,
            points=0,
            reason=limits.CAPPED_DAILY,
            recorded=False,
        )
    claimed = (
        await session.execute(
            insert(interactions)
            .values(
                event_id=data.event_id,
                member_id=data.member_id,
                type=data.type,
                occurred_at=data.occurred_at,
                attributes=data.attributes,
                points=0,
                reason="",
                request_hash=digest,
                response={},
            )
            .on_conflict_do_nothing(index_elements=[interactions.c.event_id])
            .returning(interactions.c.event_id)
        )
    ).first()
    if claimed is None:  # the same event id, sent for another member meanwhile
        replay = await _existing(session, data, digest)
        assert replay is not None
        return replay
    return await _earn_and_publish(session, settings, cache, member, data, now)


async def _earn_and_publish(
    session: AsyncSession,
    settings: PointsSettings,
    cache: RulesCache | None,
    member: ActionMember,
    data: InteractionIn,
    now: datetime,
) -> InteractionOut:
    at = data.occurred_at
    ladder = await cache.ladder(session, now) if cache else None
    if ladder is None:
        ladder = await load_ladder(session)
    earned = await earn_for_action(
        session,
        settings,
        ladder,
        member,
        action=action_for_interaction(data.type),
        key=interaction_key(data.event_id),
        source_id=data.event_id,
        at=at,
        details={"interaction_type": data.type},
    )
    out = InteractionOut(
        event_id=data.event_id,
        member_id=data.member_id,
        type=data.type,
        points=earned.points,
        reason=earned.reason,
    )
    await session.execute(
        interactions.update()
        .where(interactions.c.event_id == data.event_id)
        .values(points=earned.points, reason=earned.reason, response=out.model_dump(mode="json"))
    )
    await events.publish(
        session,
        events.points_event(
            events.INTERACTION_RECORDED,
            data.member_id,
            {
                "event_id": data.event_id,
                "member_id": data.member_id,
                "type": data.type,
                "occurred_at": at.isoformat(),
                "attributes": data.attributes,
                "points": earned.points,
                "reason": earned.reason,
            },
            time=at,
        ),
    )
    return out
