"""What an order earns: base points x the tier's multiplier (rounded down) + campaign bonus,
and the part of it that counts toward growth value (docs/points-rules.md, "The order flow").

Pure: the checkout (``points.orders.service``) computes an order's ``Earning`` from the
member's tier, the ladder and the campaigns running at the order's time.
"""

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from points.campaigns.calculator import Campaign, CampaignResult, OrderFacts, apply_campaigns
from points.orders.schemas import OrderIn
from points.tiers import service as tiers
from points.tiers.schemas import GrowthPointType, Tier, TierLadderIn


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
