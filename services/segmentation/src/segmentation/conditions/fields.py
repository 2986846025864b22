"""The profile fields a condition may use, with their type and SQL expression."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Numeric, cast, extract, func

from segmentation.profiles.models import Profile

VALUE_TIERS = ("high", "medium", "low")
LIFECYCLES = ("new", "growing", "mature", "sleeping", "churn-risk", "churned")
RFM_SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential loyalist",
    "New",
    "Promising",
    "Needs attention",
    "About to sleep",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
)
VALUE_GROUPS = ("high-value", "potential", "ordinary", "churn-risk")
BEHAVIOUR_GROUPS = (
    "price-sensitive",
    "quality-seeking",
    "service-experience",
    "social-interactive",
)
LOYALTY_TYPES = ("benefit", "trust", "monopoly", "kinship", "inertia", "latent")

Expr = Callable[[bool], ColumnElement[Any]]  # (rule_tag_context) -> expression


# What changes a field's value: an event (or an API write) about the member, only the
# recompute (a score: ``analytics/recompute.py``, the CLV fit, the strategy matrix), or the
# clock. A condition over a "score" or "clock" field is refreshed by the recompute (batch).
Source = Literal["event", "score", "clock"]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # number / string / bool / time / list
    choices: tuple[str, ...] = ()
    source: Source = "event"
    expr: Expr | None = field(default=None, compare=False)

    @property
    def recompute_only(self) -> bool:
        """True if no event changes it: only a recompute (or the clock) does."""
        return self.source != "event"


def _col(name: str) -> Expr:
    def build(_rule_ctx: bool) -> ColumnElement[Any]:
        column: ColumnElement[Any] = Profile.__table__.c[name]
        return column

    return build


def _days_since(name: str) -> Expr:
    def build(_rule_ctx: bool) -> ColumnElement[Any]:
        column = Profile.__table__.c[name]
        return func.floor(extract("epoch", func.now() - column) / 86400)

    return build


def _ratio(num: str, den: str) -> Expr:
    def build(_rule_ctx: bool) -> ColumnElement[Any]:
        c = Profile.__table__.c
        return cast(c[num], Numeric) / func.nullif(c[den], 0)

    return build


def _tags(rule_ctx: bool) -> ColumnElement[Any]:
    c = Profile.__table__.c
    # a rule tag sees only manual tags, so rule tags never depend on each other
    return c.manual_tags if rule_ctx else c.manual_tags.op("||")(c.rule_tags)


def _round2(inner: Expr) -> Expr:
    def build(rule_ctx: bool) -> ColumnElement[Any]:
        return func.round(inner(rule_ctx), 2)

    return build


_NUMBERS = [
    "order_count",
    "total_spend",
    "gross_spend",
    "refunded_amount",
    "refund_count",
    "coupon_order_count",
    "discount_total",
    "points_earned",
    "points_redeemed",
    "points_expired",
    "points_balance",
    "reviews",
    "shares",
    "check_ins",
    "logins",
    "page_views",
    "activities",
    "referrals",
    "complaints",
    "surveys",
    "nps_last",
]
# written by the recompute only (RFM, rhythm, loyalty index, CLV)
_SCORE_NUMBERS = [
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "median_gap_days",
    "loyalty_index",
    "p_alive",
    "expected_purchases_90d",
    "expected_value",
]

_specs: list[FieldSpec] = [FieldSpec(n, "number", expr=_col(n)) for n in _NUMBERS]
_specs += [FieldSpec(n, "number", source="score", expr=_col(n)) for n in _SCORE_NUMBERS]
_specs += [
    FieldSpec("average_order_value", "number", expr=_round2(_ratio("total_spend", "order_count"))),
    FieldSpec("coupon_share", "number", expr=_round2(_ratio("coupon_order_count", "order_count"))),
    FieldSpec("csat_avg", "number", expr=_round2(_ratio("csat_sum", "csat_count"))),
    FieldSpec("days_since_last_order", "number", source="clock", expr=_days_since("last_order_at")),
    FieldSpec("days_since_enrolled", "number", source="clock", expr=_days_since("enrolled_at")),
    FieldSpec("member_id", "string", expr=_col("member_id")),
    FieldSpec("tier", "string", expr=_col("tier")),
    FieldSpec("timezone", "string", expr=_col("timezone")),
    FieldSpec("value_tier", "string", VALUE_TIERS, source="score", expr=_col("value_tier")),
    FieldSpec("lifecycle", "string", LIFECYCLES, source="score", expr=_col("lifecycle")),
    FieldSpec("rfm_segment", "string", RFM_SEGMENTS, source="score", expr=_col("rfm_segment")),
    FieldSpec("value_group", "string", VALUE_GROUPS, source="score", expr=_col("value_group")),
    FieldSpec(
        "behaviour_group", "string", BEHAVIOUR_GROUPS, source="score", expr=_col("behaviour_group")
    ),
    FieldSpec("loyalty_type", "string", LOYALTY_TYPES, source="score", expr=_col("loyalty_type")),
    FieldSpec("first_order_at", "time", expr=_col("first_order_at")),
    FieldSpec("last_order_at", "time", expr=_col("last_order_at")),
    FieldSpec("enrolled_at", "time", expr=_col("enrolled_at")),
    FieldSpec("tags", "list", expr=_tags),
    FieldSpec("manual_tags", "list", expr=_col("manual_tags")),
    FieldSpec("categories", "list", expr=_col("categories")),
    FieldSpec("channels", "list", expr=_col("channels")),
    # the recompute and PUT /v1/strategy-matrix write it
    FieldSpec("strategies", "list", source="score", expr=_col("strategies")),
]

FIELDS: dict[str, FieldSpec] = {s.name: s for s in _specs}
# Fields computed from other columns of the row (a numeric division each). The live
# refresh computes each once per member, as a column of its row source
# (``segments.live``), instead of once per clause that reads it (200 rule tags read
# ``average_order_value`` and ``coupon_share`` about 90 times).
DERIVED_FIELDS = ("average_order_value", "coupon_share", "csat_avg")
# Rule tags must not depend on other rule tags: they see only manual tags.
RULE_TAG_FIELDS: dict[str, FieldSpec] = {k: v for k, v in FIELDS.items() if k != "manual_tags"}
