"""Which campaigns apply to an order and how many bonus points they add. Pure: no I/O.

Rules (also in docs/points-rules.md):

1. A campaign is *eligible* for an order when it is active, the order's ``occurred_at`` is in
   ``[starts_at, ends_at)``, the member's tier is in ``eligible_tiers`` (empty = every tier)
   and its own condition gives a bonus > 0:
   - ``category_multiplier``: the share of the order's base points that comes from items in
     ``categories`` (by item amount, rounded down) times the tier multiplier times
     ``multiplier - 1``, rounded down ("double points on shoes" doubles what the member
     earns on the shoes, tier multiplier included);
   - ``first_order_bonus``: ``bonus_points`` if this is the member's first order;
   - ``spend_threshold_bonus``: ``bonus_points`` if the paid amount >= ``threshold``;
   - ``fixed_bonus``: ``bonus_points`` on every order.
   Fixed bonuses are not multiplied by the tier.
2. Eligible campaigns are ranked by priority (higher first); on equal priority an exclusive
   campaign ranks before a stackable one, then the larger bonus, then ``campaign_id``.
3. If the best-ranked eligible campaign is *exclusive*, it applies alone. Otherwise every
   eligible *stackable* campaign applies (their bonuses add up; two multipliers on the same
   category add, they do not compound) and every eligible exclusive campaign is excluded:
   an exclusive campaign only applies when nothing outranks it.
4. The result never depends on the order of the input list, and is never negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Literal, Protocol

CampaignKind = Literal[
    "category_multiplier", "first_order_bonus", "spend_threshold_bonus", "fixed_bonus"
]
CAMPAIGN_KINDS: tuple[CampaignKind, ...] = (
    "category_multiplier",
    "first_order_bonus",
    "spend_threshold_bonus",
    "fixed_bonus",
)


class ItemLike(Protocol):
    @property
    def category(self) -> str | None: ...
    @property
    def unit_price(self) -> Decimal: ...
    @property
    def quantity(self) -> int: ...


@dataclass(frozen=True)
class OrderLine:
    category: str | None
    amount: Decimal


@dataclass(frozen=True)
class OrderFacts:
    """What the calculator needs to know about an order and its member."""

    amount: Decimal
    occurred_at: datetime
    is_first_order: bool
    member_tier: str
    lines: tuple[OrderLine, ...] = ()

    @classmethod
    def from_items(
        cls,
        *,
        amount: Decimal,
        occurred_at: datetime,
        is_first_order: bool,
        member_tier: str,
        items: Iterable[ItemLike],
    ) -> OrderFacts:
        lines = tuple(OrderLine(i.category, i.unit_price * i.quantity) for i in items)
        return cls(amount, occurred_at, is_first_order, member_tier, lines)


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    kind: CampaignKind
    starts_at: datetime
    ends_at: datetime
    stackable: bool = True
    priority: int = 0
    active: bool = True
    eligible_tiers: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    multiplier: Decimal | None = None
    bonus_points: int | None = None
    threshold: Decimal | None = None


@dataclass(frozen=True)
class CampaignLine:
    campaign_id: str
    kind: CampaignKind
    points: int


@dataclass(frozen=True)
class CampaignResult:
    bonus_points: int
    applied: list[str] = field(default_factory=list)
    lines: list[CampaignLine] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def is_running(campaign: Campaign, at: datetime) -> bool:
    return campaign.active and campaign.starts_at <= at < campaign.ends_at


def campaign_bonus(
    campaign: Campaign, order: OrderFacts, base_points: int, tier_multiplier: Decimal
) -> int:
    """The bonus this campaign alone would add to the order (0 when it is not eligible)."""
    if not is_running(campaign, order.occurred_at):
        return 0
    if campaign.eligible_tiers and order.member_tier not in campaign.eligible_tiers:
        return 0
    bonus = 0
    if campaign.kind == "category_multiplier":
        if campaign.multiplier is None or base_points <= 0:
            return 0
        items_total = sum((line.amount for line in order.lines), Decimal(0))
        if items_total <= 0:
            return 0
        in_category = sum(
            (line.amount for line in order.lines if line.category in campaign.categories),
            Decimal(0),
        )
        category_base = _floor(Decimal(base_points) * min(in_category, items_total) / items_total)
        bonus = _floor(category_base * tier_multiplier * (campaign.multiplier - 1))
    elif campaign.kind == "first_order_bonus":
        bonus = (campaign.bonus_points or 0) if order.is_first_order else 0
    elif campaign.kind == "spend_threshold_bonus":
        if campaign.threshold is not None and order.amount >= campaign.threshold:
            bonus = campaign.bonus_points or 0
    elif campaign.kind == "fixed_bonus":
        bonus = campaign.bonus_points or 0
    return max(0, bonus)


def apply_campaigns(
    order: OrderFacts,
    campaigns: Sequence[Campaign],
    base_points: int,
    tier_multiplier: Decimal,
) -> CampaignResult:
    """Bonus points the running campaigns add to an order (rules in the module docstring)."""
    eligible: list[tuple[Campaign, int]] = []
    for campaign in campaigns:
        bonus = campaign_bonus(campaign, order, base_points, tier_multiplier)
        if bonus > 0:
            eligible.append((campaign, bonus))
    if not eligible:
        return CampaignResult(bonus_points=0)
    eligible.sort(key=lambda cb: (-cb[0].priority, cb[0].stackable, -cb[1], cb[0].campaign_id))
    top, top_bonus = eligible[0]
    if not top.stackable:
        chosen = [(top, top_bonus)]
    else:
        chosen = [(c, b) for c, b in eligible if c.stackable]
    chosen_ids = {c.campaign_id for c, _ in chosen}
    return CampaignResult(
        bonus_points=sum(b for _, b in chosen),
        applied=[c.campaign_id for c, _ in chosen],
        lines=[CampaignLine(c.campaign_id, c.kind, b) for c, b in chosen],
        excluded=sorted(c.campaign_id for c, _ in eligible if c.campaign_id not in chosen_ids),
    )
