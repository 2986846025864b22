"""The member's own export: what segmentation holds about them, as a member token reads it.

A member is entitled to their own facts: their orders, refunds and activities as this
service recorded them, their tier history, survey scores and complaints, the marketing
contacts made to them and their contact preferences, and the totals counted from those
facts (spend, orders, points, reviews...). Segmentation's scoring of them is internal and
left out: tags, segments and their history, RFM, value tier and group, behaviour group,
lifecycle stage, loyalty index and type, p_alive, expected purchases and value (CLV),
strategies (API.md "Additions": a member token never reads internal labels). The operator's
export (admin), the answer to a formal access request, keeps all of it.
"""

from __future__ import annotations

from typing import Any

# The profile's facts: counted from what the member did. A column not listed here (a score
# added later) stays out of the member's export until someone decides it is a fact.
PROFILE_FACTS = (
    "member_id",
    "enrolled_at",
    "timezone",
    "tier",
    "tier_changed_at",
    "order_count",
    "total_spend",
    "gross_spend",
    "refunded_amount",
    "refund_count",
    "first_order_at",
    "last_order_at",
    "coupon_order_count",
    "discount_total",
    "categories",
    "channels",
    "points_earned",
    "points_redeemed",
    "points_expired",
    "points_balance",
    "points_balance_at",
    "reviews",
    "shares",
    "check_ins",
    "logins",
    "page_views",
    "activities",
    "referrals",
    "last_interaction_at",
    "complaints",
    "first_complaint_at",
    "surveys",
    "nps_last",
    "csat_sum",
    "csat_count",
    "updated_at",
)
# The lists of facts, as the full export has them; segments and segment history are left out.
FACT_LISTS = (
    "orders",
    "refunds",
    "activities",
    "tier_history",
    "survey_scores",
    "complaints",
    "contacts",
    "contact_preferences",
)


def for_member(doc: dict[str, Any]) -> dict[str, Any]:
    profile = doc["profile"]
    return {
        "member_id": doc["member_id"],
        "profile": {f: profile.get(f) for f in PROFILE_FACTS} if profile is not None else None,
        **{name: doc[name] for name in FACT_LISTS},
    }
