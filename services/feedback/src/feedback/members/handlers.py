"""Consumers: feedback's projection of tier and value tier, and proactive churn follow-ups.

Payload fields are read leniently (``to_tier`` or ``new_tier`` or ``tier``) so a
producer can add fields without breaking this consumer; docs/feedback.md lists them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from feedback import events
from feedback.followups import service as follow_ups
from feedback.members.models import MemberProjection
from feedback.privacy.service import erase_member
from feedback.settings import FeedbackSettings
from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import Handler

VALUE_TIERS = frozenset({"high", "medium", "low"})


def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = data.get(key)
        if value not in (None, ""):
            return value
    return None


def _member(event: CloudEvent) -> str | None:
    member = _first(event.data, "member_id") or event.subject
    return str(member) if member else None


async def set_tier(session: AsyncSession, member_id: str, tier: str, as_of: datetime) -> None:
    stmt = insert(MemberProjection).values(member_id=member_id, tier=tier, tier_as_of=as_of)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[MemberProjection.member_id],
            set_={"tier": tier, "tier_as_of": as_of, "updated_at": func.now()},
            where=(MemberProjection.tier_as_of.is_(None)) | (MemberProjection.tier_as_of <= as_of),
        )
    )


async def set_value_tier(
    session: AsyncSession, member_id: str, value_tier: str | None, as_of: datetime
) -> None:
    stmt = insert(MemberProjection).values(
        member_id=member_id, value_tier=value_tier, value_tier_as_of=as_of
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[MemberProjection.member_id],
            set_={"value_tier": value_tier, "value_tier_as_of": as_of, "updated_at": func.now()},
            where=(MemberProjection.value_tier_as_of.is_(None))
            | (MemberProjection.value_tier_as_of <= as_of),
        )
    )


def _value_tier_of(data: dict[str, Any]) -> str | None:
    value = _first(data, "value_tier", "to_value_tier", "new_value_tier")
    if isinstance(value, str) and value.lower() in VALUE_TIERS:
        return value.lower()
    return None


def normalise(name: str) -> str:
    """'Churn risk' / 'churn_risk' / 'CHURN-RISK' -> 'churn-risk'."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _names(data: dict[str, Any], *keys: str) -> set[str]:
    return {normalise(str(data[k])) for k in keys if data.get(k)}


def _mentions(names: set[str], wanted: set[str]) -> bool:
    """A name matches when one of ``wanted`` is the name or a word-run inside it."""
    return any(w == n or f"-{w}-" in f"-{n}-" for n in names for w in wanted)


def build_handlers(settings: FeedbackSettings) -> dict[str, Handler]:
    churn_names = {normalise(s) for s in settings.churn_risk_segments}
    high_value_names = {normalise(s) for s in settings.high_value_segments}
    segment_keys = ("segment_id", "segment_name", "segment_key", "name", "key")

    async def on_tier_changed(session: AsyncSession, event: CloudEvent) -> None:
        member = _member(event)
        tier = _first(event.data, "to_tier", "new_tier", "tier")
        if member and isinstance(tier, str):
            await set_tier(session, member, tier.lower(), event.time)

    async def on_value_tier(session: AsyncSession, event: CloudEvent) -> None:
        member = _member(event)
        value_tier = _value_tier_of(event.data)
        if member and value_tier:
            await set_value_tier(session, member, value_tier, event.time)

    def _is_churn_segment(data: dict[str, Any]) -> bool:
        return _mentions(_names(data, *segment_keys, "value_group", "lifecycle_stage"), churn_names)

    async def _proactive(session: AsyncSession, event: CloudEvent, member: str, key: str) -> None:
        projection = await session.get(MemberProjection, member)
        high = (
            follow_ups.is_high_value(projection, settings) or _value_tier_of(event.data) == "high"
        )
        if not high:
            return
        await follow_ups.ensure_follow_up(
            session,
            member_id=member,
            reason=follow_ups.CHURN_RISK,
            dedupe_key=f"churn:{member}:{key}:{event.time.date().isoformat()}",
            due_at=event.time + timedelta(days=settings.churn_follow_up_days),
            now=event.time,
        )

    async def on_segment_entered(session: AsyncSession, event: CloudEvent) -> None:
        member = _member(event)
        if not member:
            return
        value_tier = _value_tier_of(event.data)
        if value_tier is None and _mentions(_names(event.data, *segment_keys), high_value_names):
            value_tier = "high"
        if value_tier:
            await set_value_tier(session, member, value_tier, event.time)
        if _is_churn_segment(event.data):
            segment = _first(event.data, "segment_id", "segment_name", "key", "name") or "churn"
            await _proactive(session, event, member, str(segment))

    async def on_segment_left(session: AsyncSession, event: CloudEvent) -> None:
        member = _member(event)
        if member and _mentions(_names(event.data, *segment_keys), high_value_names):
            projection = await session.get(MemberProjection, member)
            if projection is not None and projection.value_tier == "high":
                await set_value_tier(session, member, None, event.time)

    async def on_lifecycle_changed(session: AsyncSession, event: CloudEvent) -> None:
        member = _member(event)
        if not member:
            return
        value_tier = _value_tier_of(event.data)
        if value_tier:
            await set_value_tier(session, member, value_tier, event.time)
        stage = _first(event.data, "to", "to_stage", "lifecycle_stage", "stage")
        if isinstance(stage, str) and normalise(stage) in churn_names:
            await _proactive(session, event, member, f"lifecycle-{normalise(stage)}")

    async def on_member_erased(session: AsyncSession, event: CloudEvent) -> None:
        member = _member(event)
        if member:
            await erase_member(session, member)

    return {
        events.MEMBER_ERASED: on_member_erased,
        events.TIER_CHANGED: on_tier_changed,
        events.VALUE_TIER_CHANGED: on_value_tier,
        events.PROFILE_UPDATED: on_value_tier,
        events.SEGMENT_ENTERED: on_segment_entered,
        events.SEGMENT_LEFT: on_segment_left,
        events.LIFECYCLE_CHANGED: on_lifecycle_changed,
    }
