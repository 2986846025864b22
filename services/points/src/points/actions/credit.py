"""Crediting points for actions (check-ins, interactions, surveys, birthdays, referrals).

Every credit runs under the member's balance lock, sums what the same action already
earned in the member's local day and month (caps), decides with ``decide`` and writes one
lot + entry (``source_type = "action:<action>"``) under a natural key, repaying a debt
first, with a ``loyalty.points.earned.v1`` event; growth value that qualifies upgrades the
member at once (``points.tiers.upgrades``). The caller makes the action itself
idempotent (its own table or the inbox) before calling.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from points import events
from points.actions.service import ActionDecision, decide, periods
from points.errors import MemberNotFound
from points.ledger import models as lm
from points.ledger import service as ledger
from points.ledger.models import entries
from points.members.models import Member
from points.rules.models import EarningRuleRow
from points.rules.schemas import EarningRuleFields
from points.settings import PointsSettings
from points.tiers.schemas import TierLadderIn
from points.tiers.upgrades import upgrade_at_once


@dataclass(frozen=True)
class ActionMember:
    locked: ledger.LockedBalance
    timezone: str
    birthday: Any
    referred_by: str | None
    enrolled_at: datetime


@dataclass(frozen=True)
class ActionCredit:
    points: int
    reason: str
    balance_available: int
    balance_pending: int
    upgraded_to: str | None = None  # the tier this credit moved the member up to


async def lock_action_member(session: AsyncSession, member_id: str) -> ActionMember | None:
    """The member's balance lock and the profile fields actions need (None: not enrolled)."""
    locked = await ledger.lock_balance(session, member_id)
    if locked is None:
        return None
    row = (
        await session.execute(
            select(
                Member.timezone,
                Member.birthday,
                Member.referred_by,
                Member.erased_at,
                Member.enrolled_at,
            ).where(Member.member_id == member_id)
        )
    ).one()
    if row.erased_at is not None:
        return None
    return ActionMember(locked, row.timezone, row.birthday, row.referred_by, row.enrolled_at)


async def require_action_member(session: AsyncSession, member_id: str) -> ActionMember:
    member = await lock_action_member(session, member_id)
    if member is None:
        raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
    return member


async def load_rule(session: AsyncSession, action: str) -> EarningRuleFields | None:
    row = (
        await session.execute(select(EarningRuleRow).where(EarningRuleRow.action == action))
    ).scalar_one_or_none()
    if row is None:
        return None
    return EarningRuleFields(
        points=row.points,
        daily_cap=row.daily_cap,
        monthly_cap=row.monthly_cap,
        enabled=row.enabled,
        counts_toward_growth=row.counts_toward_growth,
    )


def source_type(action: str) -> str:
    return f"action:{action}"


async def earned_in_periods(
    session: AsyncSession, member_id: str, action: str, at: datetime, timezone: str
) -> tuple[int, int]:
    """Points this action already earned in the member's local day and month around ``at``."""
    p = periods(at, timezone)
    amount = entries.c.points + entries.c.pending_delta
    in_day = (entries.c.occurred_at >= p.day_start) & (entries.c.occurred_at < p.day_end)
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(amount).filter(in_day), 0),
                func.coalesce(func.sum(amount), 0),
            ).where(
                entries.c.member_id == member_id,
                entries.c.source_type == source_type(action),
                entries.c.entry_type == lm.EARN,
                entries.c.occurred_at >= p.month_start,
                entries.c.occurred_at < p.month_end,
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def decide_action(
    session: AsyncSession,
    ladder: TierLadderIn,
    member: ActionMember,
    action: str | None,
    at: datetime,
) -> ActionDecision:
    if action is None:
        return decide(None, ladder, 0, 0)
    rule = await load_rule(session, action)
    today, month = await earned_in_periods(
        session, member.locked.member_id, action, at, member.timezone
    )
    return decide(rule, ladder, today, month)


async def credit(
    session: AsyncSession,
    settings: PointsSettings,
    member: ActionMember,
    *,
    action: str,
    points: int,
    growth: int,
    key: str,
    source_id: str,
    at: datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    source: str | None = None,
) -> tuple[int, int]:
    """One available lot of ``points`` (> 0) for an action; returns (available, pending).

    ``source`` overrides the entry's ``source_type`` (default ``action:<action>``).
    """
    kind = source or source_type(action)
    posting = ledger.Posting(session, member.locked, kind, source_id, at, reason=reason or action)
    expires_at = ledger.expiry_for(at, settings.expiry_months)
    await posting.credit(
        points,
        key=key,
        entry_type=lm.EARN,
        earned_at=at,
        available_at=at,
        expires_at=expires_at,
        growth=growth,
        details=details,
    )
    await posting.settle_debt(key=key)
    balance = await posting.finish()
    await events.publish(
        session,
        events.points_event(
            events.POINTS_EARNED,
            member.locked.member_id,
            {
                "member_id": member.locked.member_id,
                "points": points,
                "pending": False,
                "available_at": at.isoformat(),
                "expires_at": expires_at.isoformat() if expires_at else None,
                "source_type": kind,
                "source_id": source_id,
                "occurred_at": at.isoformat(),
                "balance_available": balance.available,
                "balance_pending": balance.pending,
                "breakdown": {"action": action, **(details or {})},
            },
            time=at,
        ),
    )
    return balance.available, balance.pending


async def earn_for_action(
    session: AsyncSession,
    settings: PointsSettings,
    ladder: TierLadderIn,
    member: ActionMember,
    *,
    action: str | None,
    key: str,
    source_id: str,
    at: datetime,
    details: dict[str, Any] | None = None,
) -> ActionCredit:
    """Decide (rule + caps) and credit; a capped or disabled action earns 0 and says why.

    Points that count toward growth value upgrade the member at once if they qualify
    (``upgrade_at_once``, in the same transaction).
    """
    decision = await decide_action(session, ladder, member, action, at)
    available, pending = member.locked.available, member.locked.pending
    upgrade = None
    if decision.points > 0 and action is not None:
        available, pending = await credit(
            session,
            settings,
            member,
            action=action,
            points=decision.points,
            growth=decision.growth_points,
            key=key,
            source_id=source_id,
            at=at,
            details=details,
        )
        # growth value that qualifies moves the member up at once (docs/points-rules.md)
        upgrade = await upgrade_at_once(
            session,
            ladder,
            member.locked.member_id,
            growth_added=decision.growth_points,
            at=at,
            reason="action",
        )
    upgraded_to = upgrade.to_tier if upgrade is not None else None
    return ActionCredit(decision.points, decision.reason, available, pending, upgraded_to)
