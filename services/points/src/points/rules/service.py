"""Earning rules: the pure cap logic and reading/replacing the stored rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import NotFound
from points.rules.models import EarningRuleRow
from points.rules.schemas import (
    ACTION_TYPES,
    EarningRule,
    EarningRuleFields,
    EarningRuleOut,
    EarningRulesIn,
    EarningRulesOut,
)

CapReason = Literal["granted", "disabled", "no_points", "capped_daily", "capped_monthly"]


class EarningRuleNotFound(NotFound):
    slug = "earning-rule-not-found"
    title = "No earning rule for this action"


def allowed_points(
    rule: EarningRuleFields, already_today: int, already_this_month: int
) -> tuple[int, CapReason]:
    """Points one more action earns given what this action already earned today / this month.

    ``already_*`` are points already credited for this action type in the member's current
    local day and month. Returns ``(points, reason)``:
    - ``disabled`` / ``no_points``: 0 (rule off, or amount 0);
    - ``granted``: the full amount;
    - ``capped_daily`` / ``capped_monthly``: what is left under the tighter cap, possibly 0
      (a partial grant keeps the cap exact; the reason names the cap that cut it).
    """
    if not rule.enabled:
        return 0, "disabled"
    if rule.points <= 0:
        return 0, "no_points"
    points: int = rule.points
    reason: CapReason = "granted"
    if rule.monthly_cap is not None:
        left = max(0, rule.monthly_cap - max(0, already_this_month))
        if left < points:
            points, reason = left, "capped_monthly"
    if rule.daily_cap is not None:
        left = max(0, rule.daily_cap - max(0, already_today))
        if left < points:
            points, reason = left, "capped_daily"
    return points, reason


def _out(row: EarningRuleRow) -> EarningRuleOut:
    return EarningRuleOut.model_validate(row, from_attributes=True)


async def list_rules(session: AsyncSession) -> EarningRulesOut:
    rows = (await session.execute(select(EarningRuleRow))).scalars().all()
    order = {action: i for i, action in enumerate(ACTION_TYPES)}
    return EarningRulesOut(
        rules=sorted((_out(r) for r in rows), key=lambda r: order.get(r.action, len(order)))
    )


async def get_rule(session: AsyncSession, action: str) -> EarningRuleOut:
    """The rule for one action (the action flow reads it inside its own transaction)."""
    row = (
        await session.execute(select(EarningRuleRow).where(EarningRuleRow.action == action))
    ).scalar_one_or_none()
    if row is None:
        raise EarningRuleNotFound(f"No earning rule for action {action!r}", action=action)
    return _out(row)


async def replace_rules(session: AsyncSession, data: EarningRulesIn) -> EarningRulesOut:
    """Upsert the listed rules (each replaced as a whole); unlisted actions keep theirs."""
    now = datetime.now(UTC)
    for rule in data.rules:
        values = rule.model_dump()
        await session.execute(
            insert(EarningRuleRow)
            .values(**values, updated_at=now)
            .on_conflict_do_update(
                index_elements=[EarningRuleRow.action],
                set_={**{k: v for k, v in values.items() if k != "action"}, "updated_at": now},
            )
        )
    return await list_rules(session)


async def replace_rule(
    session: AsyncSession, action: str, data: EarningRuleFields
) -> EarningRuleOut:
    await replace_rules(
        session,
        EarningRulesIn(rules=[EarningRule(action=action, **data.model_dump())]),
    )
    return await get_rule(session, action)
