"""Consumers: feedback's projection of tier and value tier, and proactive churn-risk visits.

Every payload is read with its producer's model (``loyalty_shared.contracts``):

- ``loyalty.tier.changed.v1`` (points): the member's tier, for the SLA policies per tier
  and the monthly visits of the tiers in ``high_value_tiers``;
- ``loyalty.profile.value_tier_changed.v1`` (segmentation, at each recompute): the value
  tier, for the SLA policies per value tier and the monthly high-value visits;
- a high-value member whose lifecycle stage becomes ``churn-risk``
  (``loyalty.profile.lifecycle_changed.v1``), whose churn-risk level becomes ``high``
  (``loyalty.profile.churn_risk_changed.v1``), or who enters a segment ops named as churn
  risk (``churn_risk_segments``, ``loyalty.segment.entered.v1``) gets a proactive visit,
  once per member, reason and day;
- ``loyalty.member.erased.v1``: the member's data goes (``privacy.service``).

Each projection keeps the newest by event time: a late older event changes nothing.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from feedback.followups import service as follow_ups
from feedback.members.models import MemberProjection
from feedback.privacy.service import erase_member
from feedback.settings import FeedbackSettings
from loyalty_shared.contracts.points import MemberErasedV1, TierChangedV1
from loyalty_shared.contracts.segmentation import (
    ChurnRiskChangedV1,
    LifecycleChangedV1,
    SegmentEnteredV1,
    ValueTierChangedV1,
)
from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import Handler


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


def normalise(name: str) -> str:
    """'Churn risk' / 'churn_risk' / 'CHURN-RISK' -> 'churn-risk'."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _mentions(names: set[str], wanted: set[str]) -> bool:
    """A name matches when one of ``wanted`` is the name or a word-run inside it."""
    return any(w == n or f"-{w}-" in f"-{n}-" for n in names for w in wanted)


def build_handlers(settings: FeedbackSettings) -> dict[str, Handler]:
    churn_names = {normalise(s) for s in settings.churn_risk_segments}

    async def on_tier_changed(session: AsyncSession, event: CloudEvent) -> None:
        data = TierChangedV1.of(event)
        await set_tier(session, data.member_id, data.to_tier.lower(), event.time)

    async def on_value_tier_changed(session: AsyncSession, event: CloudEvent) -> None:
        data = ValueTierChangedV1.of(event)
        await set_value_tier(session, data.member_id, data.to_value_tier, data.as_of)

    async def _proactive(session: AsyncSession, event: CloudEvent, member: str, key: str) -> None:
        """A churn-risk visit for a high-value member (once per member, reason and day)."""
        projection = await session.get(MemberProjection, member)
        if not follow_ups.is_high_value(projection, settings):
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
        data = SegmentEnteredV1.of(event)
        names = {normalise(data.segment_id), normalise(data.segment_name)}
        if _mentions(names, churn_names):
            await _proactive(session, event, data.member_id, data.segment_id)

    async def on_lifecycle_changed(session: AsyncSession, event: CloudEvent) -> None:
        data = LifecycleChangedV1.of(event)
        if data.to_stage == "churn-risk":
            await _proactive(session, event, data.member_id, "lifecycle-churn-risk")

    async def on_churn_risk_changed(session: AsyncSession, event: CloudEvent) -> None:
        data = ChurnRiskChangedV1.of(event)
        if data.to_churn_risk == "high":
            await _proactive(session, event, data.member_id, "churn-risk-high")

    async def on_member_erased(session: AsyncSession, event: CloudEvent) -> None:
        await erase_member(session, MemberErasedV1.of(event).member_id)

    return {
        MemberErasedV1.TYPE: on_member_erased,
        TierChangedV1.TYPE: on_tier_changed,
        ValueTierChangedV1.TYPE: on_value_tier_changed,
        SegmentEnteredV1.TYPE: on_segment_entered,
        LifecycleChangedV1.TYPE: on_lifecycle_changed,
        ChurnRiskChangedV1.TYPE: on_churn_risk_changed,
    }
