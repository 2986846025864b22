"""What an order earns: base points x the tier's multiplier (rounded down) + campaign bonus,
the part of it that counts toward growth value, and the upgrade it gives
(docs/points-rules.md, "The order flow").

Pure, no I/O: ``earn`` works it all out from the member's facts (``OrderMember``), the
tier ladder and the campaigns running at the order's time; ``points.checkout.plan`` turns
that into the rows, events and answer the checkout writes.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from points.campaigns.calculator import Campaign, CampaignResult, OrderFacts, apply_campaigns
from points.checkout.facts import OrderMember
from points.ledger.service import expiry_for
from points.orders.schemas import OrderIn
from points.settings import PointsSettings
from points.tiers import service as tiers
from points.tiers.schemas import GrowthPointType, Tier, TierLadderIn
from points.tiers.upgrades import Upgrade, held_tier, upgrade_for


def base_points(amount: Decimal, rate: Decimal) -> int:
    """1 point per unit paid (configurable rate), rounded down per order."""
    return int((amount * rate).to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True)
class Earning:
    """How an order's points are made (the ledger entry's ``details``)."""

    base: int
    tier_multiplier: Decimal
    tier_bonus: int
    campaign: CampaignResult
    growth: int

    @property
    def points(self) -> int:
        return self.base + self.tier_bonus + self.campaign.bonus_points

    def details(self) -> dict[str, Any]:
        return {
            "base_points": self.base,
            "tier_multiplier": str(self.tier_multiplier),
            "tier_bonus": self.tier_bonus,
            "campaign_bonus": self.campaign.bonus_points,
            "campaigns": [
                {"campaign_id": line.campaign_id, "kind": line.kind, "points": line.points}
                for line in self.campaign.lines
            ],
            "growth_points": self.growth,
        }


def compute_earning(
    ladder: TierLadderIn,
    campaigns: list[Campaign],
    rate: Decimal,
    data: OrderIn,
    *,
    tier: Tier,
    is_first_order: bool,
) -> Earning:
    """Base x tier multiplier (rounded down) + campaign bonus; and what counts toward growth."""
    base = base_points(data.amount, rate)
    multiplied = int((base * tier.multiplier).to_integral_value(rounding=ROUND_FLOOR))
    if campaigns:
        facts = OrderFacts.from_items(
            amount=data.amount,
            occurred_at=data.occurred_at,
            is_first_order=is_first_order,
            member_tier=tier.code,
            items=data.items,
        )
        result = apply_campaigns(facts, campaigns, base, tier.multiplier)
    else:  # what apply_campaigns answers for no campaigns, without the order's facts
        result = CampaignResult(bonus_points=0)
    tier_bonus = multiplied - base
    parts: tuple[tuple[GrowthPointType, int], ...] = (
        ("purchase", base),
        ("tier_bonus", tier_bonus),
        ("campaign_bonus", result.bonus_points),
    )
    growth = sum(part for kind, part in parts if tiers.counts_toward_growth(ladder, kind))
    return Earning(base, tier.multiplier, tier_bonus, result, growth)


@dataclass(frozen=True)
class Earned:
    """An order's earning with everything that follows from it for the member."""

    earning: Earning
    upgrade: Upgrade | None
    new_tier: str  # the tier after the order (the upgrade's, or the one stored)
    new_growth: int  # the growth value after the order, as the member status shows it
    pending: bool  # the points wait out the return window
    available_at: datetime
    expires_at: datetime | None

    @property
    def points(self) -> int:
        return self.earning.points


def earn(
    settings: PointsSettings,
    data: OrderIn,
    ladder: TierLadderIn,
    campaigns: list[Campaign],
    member: OrderMember,
    now: datetime,
) -> Earned:
    """The order's points at the tier held when it came, and the upgrade they give."""
    locked = member.locked
    tier = held_tier(ladder, locked.tier, member.growth_value)
    earning = compute_earning(
        ladder,
        campaigns,
        settings.earn_rate,
        data,
        tier=tier,
        is_first_order=not member.has_orders,
    )
    new_growth = max(0, member.window_sum + earning.growth)
    upgrade = upgrade_for(
        ladder,
        data.member_id,
        locked.tier,
        tier,
        growth_value=new_growth,
        reason="order",
        at=data.occurred_at,
    )
    available_at = data.occurred_at + timedelta(days=settings.pending_days)
    return Earned(
        earning,
        upgrade,
        upgrade.to_tier if upgrade is not None else locked.tier,
        new_growth,
        earning.points > 0 and available_at > now,
        available_at,
        expiry_for(data.occurred_at, settings.expiry_months),
    )
