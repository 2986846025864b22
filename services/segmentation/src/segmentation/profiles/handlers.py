"""Consumers that fold other services' events into profiles.

Every payload is read with its producer's model (``loyalty_shared.contracts``): a field
the model lacks cannot be read here (mypy), a payload without a required field is
dead-lettered with the reason. Idempotency: the inbox runs each event id once; orders
and refunds are also keyed by their natural ids (order_id, refund_id), so a
re-published event with a new id is still counted once. Order tolerance: first/last
times use least/greatest, the points balance and the tier keep the newest by event
time. After each event the member's rule tags and
segment memberships are brought up to date (segments.live.refresh_member; in
the consumer, once per batch for every member it touched).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, case, cast, func, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.contracts.feedback import ComplaintOpenedV1, SurveyCompletedV1
from loyalty_shared.contracts.points import (
    InteractionRecordedV1,
    MemberCheckedInV1,
    MemberEnrolledV1,
    MemberErasedV1,
    OrderRecordedV1,
    OrderRefundedV1,
    PointsAdjustedV1,
    PointsEarnedV1,
    PointsExpiredV1,
    PointsMaturedV1,
    PointsRedeemedV1,
    PointsReversedV1,
    RedemptionCancelledV1,
    TierChangedV1,
)
from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import Handler
from segmentation.privacy.service import erase_member
from segmentation.profiles.models import (
    MemberActivity,
    OrderRefund,
    Profile,
)
from segmentation.segments.live import refresh_member, refresh_members

PROFILES: Any = Profile.__table__
P = PROFILES.c


async def _ensure_profile(session: AsyncSession, member_id: str) -> None:
    await session.execute(
        insert(Profile)
        .values(member_id=member_id)
        .on_conflict_do_nothing(index_elements=[Profile.member_id])
    )


async def _bump(session: AsyncSession, member_id: str, **values: Any) -> None:
    """Create the profile if needed, then apply ``values`` (SQL expressions) to it."""
    await _ensure_profile(session, member_id)
    await session.execute(
        update(Profile)
        .where(Profile.member_id == member_id)
        .values(updated_at=func.clock_timestamp(), **values)
    )


async def on_member_enrolled(session: AsyncSession, event: CloudEvent) -> None:
    await on_members_enrolled(session, [event])


async def on_tier_changed(session: AsyncSession, event: CloudEvent) -> None:
    await on_tiers_changed(session, [event])


def _order_row(event: CloudEvent) -> dict[str, Any]:
    data = OrderRecordedV1.of(event)
    prices = [i.unit_price for i in data.items]
    return {
        "order_id": data.order_id,
        "member_id": data.member_id,
        "amount": data.amount,
        "currency": data.currency,
        "discount_amount": data.discount_amount,
        "coupon_used": bool(data.coupon_used) or data.discount_amount > 0,
        "channel": data.channel or None,
        "categories": sorted({i.category for i in data.items if i.category}),
        "max_unit_price": max(prices) if prices else None,
        "occurred_at": data.occurred_at,
    }


# One statement per batch of orders: the new orders are inserted (a known order_id, or
# one twice in the batch, counts once), the inserted ones summed per member, and the
# sums added to the members' profiles (created if needed). Arrays of columns in, so
# the cost per order is one row of each array, not a statement or a bound row.
_ORDERS_BATCH = text("""
WITH incoming AS (
    SELECT * FROM unnest(
        CAST(:order_id AS text[]), CAST(:member_id AS text[]), CAST(:amount AS numeric[]),
        CAST(:currency AS text[]), CAST(:discount_amount AS numeric[]),
        CAST(:coupon_used AS boolean[]), CAST(:channel AS text[]), CAST(:categories AS text[]),
        CAST(:max_unit_price AS numeric[]), CAST(:occurred_at AS timestamptz[])
    ) AS t(order_id, member_id, amount, currency, discount_amount, coupon_used, channel,
           categories, max_unit_price, occurred_at)
), inserted AS (
    INSERT INTO member_orders (order_id, member_id, amount, currency, discount_amount,
                               coupon_used, channel, categories, max_unit_price, occurred_at)
    SELECT order_id, member_id, amount, currency, discount_amount, coupon_used, channel,
           CAST(categories AS text[]),
           max_unit_price, occurred_at
    FROM incoming
    ON CONFLICT (order_id) DO NOTHING
    RETURNING member_id, amount, discount_amount, coupon_used, channel, categories, occurred_at
), categories AS (
    SELECT i.member_id, array_agg(DISTINCT c ORDER BY c) AS categories
    FROM inserted i, unnest(i.categories) AS c GROUP BY i.member_id
), totals AS (
    SELECT member_id, count(*) AS order_count, sum(amount) AS spend,
           min(occurred_at) AS first_order_at, max(occurred_at) AS last_order_at,
           count(*) FILTER (WHERE coupon_used) AS coupon_order_count,
           sum(discount_amount) AS discount_total,
           COALESCE(array_agg(DISTINCT channel ORDER BY channel)
                    FILTER (WHERE channel IS NOT NULL), '{}') AS channels
    FROM inserted GROUP BY member_id
)
INSERT INTO profiles AS p (member_id, order_count, gross_spend, total_spend, first_order_at,
                           last_order_at, coupon_order_count, discount_total, categories,
                           channels, updated_at)
SELECT t.member_id, t.order_count, t.spend, t.spend, t.first_order_at, t.last_order_at,
       t.coupon_order_count, t.discount_total, COALESCE(c.categories, '{}'), t.channels,
       clock_timestamp()
FROM totals t LEFT JOIN categories c ON c.member_id = t.member_id
ORDER BY t.member_id
ON CONFLICT (member_id) DO UPDATE SET
    order_count = p.order_count + excluded.order_count,
    gross_spend = p.gross_spend + excluded.gross_spend,
    total_spend = p.total_spend + excluded.total_spend,
    first_order_at = least(p.first_order_at, excluded.first_order_at),
    last_order_at = greatest(p.last_order_at, excluded.last_order_at),
    coupon_order_count = p.coupon_order_count + excluded.coupon_order_count,
    discount_total = p.discount_total + excluded.discount_total,
    categories = CASE WHEN excluded.categories <@ p.categories THEN p.categories
                      ELSE ARRAY(SELECT DISTINCT v FROM unnest(p.categories || excluded.categories)
                                 AS v ORDER BY v) END,
    channels = CASE WHEN excluded.channels <@ p.channels THEN p.channels
                    ELSE ARRAY(SELECT DISTINCT v FROM unnest(p.channels || excluded.channels)
                               AS v ORDER BY v) END,
    updated_at = clock_timestamp()
RETURNING p.member_id
""")

_ORDER_COLUMNS = (
    "order_id",
    "member_id",
    "amount",
    "currency",
    "discount_amount",
    "coupon_used",
    "channel",
    "categories",
    "max_unit_price",
    "occurred_at",
)


def _array_literal(values: list[str]) -> str:
    """A Postgres array literal of text values (each quoted, ``\\`` and ``"`` escaped): one
    text per order for the batch statement, cast per row (an array of arrays of unequal
    lengths cannot be bound)."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


async def on_orders_recorded(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Set-based: one statement inserts the orders and updates the profiles they touch.

    An order_id already known (or twice in the batch) counts once.
    """
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        row = _order_row(event)
        rows.setdefault(row["order_id"], row)
    if not rows:
        return
    columns: dict[str, list[Any]] = {name: [] for name in _ORDER_COLUMNS}
    for row in rows.values():
        for name in _ORDER_COLUMNS:
            columns[name].append(row[name])
    columns["categories"] = [_array_literal(c) for c in columns["categories"]]
    touched = list((await session.execute(_ORDERS_BATCH, columns)).scalars())
    await refresh_members(session, touched, events[-1].type)


async def on_order_recorded(session: AsyncSession, event: CloudEvent) -> None:
    await on_orders_recorded(session, [event])


async def on_order_refunded(session: AsyncSession, event: CloudEvent) -> None:
    data = OrderRefundedV1.of(event)
    member, amount = data.member_id, data.amount
    inserted = (
        await session.execute(
            insert(OrderRefund)
            .values(
                refund_id=data.refund_id,
                order_id=data.order_id,
                member_id=member,
                amount=amount,
                occurred_at=data.occurred_at,
            )
            .on_conflict_do_nothing(index_elements=[OrderRefund.refund_id])
            .returning(OrderRefund.refund_id)
        )
    ).scalar_one_or_none()
    if inserted is None:
        return
    await _bump(
        session,
        member,
        refunded_amount=P.refunded_amount + amount,
        refund_count=P.refund_count + 1,
        total_spend=P.total_spend - amount,
    )
    await refresh_member(session, member, event.type)


async def _points_balance(
    session: AsyncSession,
    event: CloudEvent,
    member: str,
    at: datetime,
    balance: int,
    **values: Any,
) -> None:
    """Apply ``values``; the balance is the newest by event time (``at``)."""
    await _bump(session, member, **values)
    await session.execute(
        update(Profile)
        .where(
            Profile.member_id == member,
            (P.points_balance_at.is_(None)) | (P.points_balance_at <= at),
        )
        .values(points_balance=balance, points_balance_at=at)
    )
    await refresh_member(session, member, event.type)


async def on_points_earned_batch(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Set-based: points summed per member; the newest balance (by occurred_at) wins."""
    totals: dict[str, dict[str, Any]] = {}
    for event in events:
        data = PointsEarnedV1.of(event)
        t = totals.setdefault(
            data.member_id,
            {
                "member_id": data.member_id,
                "points_earned": 0,
                "points_balance": None,
                "points_balance_at": None,
            },
        )
        t["points_earned"] += abs(data.points)
        at = data.occurred_at
        if t["points_balance_at"] is None or at >= t["points_balance_at"]:
            t["points_balance"], t["points_balance_at"] = data.balance_available, at
    values = [{**t, "points_balance": t["points_balance"] or 0} for t in totals.values()]
    stmt = insert(PROFILES)
    new = stmt.excluded
    newer = new.points_balance_at.is_not(None) & (
        P.points_balance_at.is_(None) | (P.points_balance_at <= new.points_balance_at)
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[P.member_id],
            set_={
                "points_earned": P.points_earned + new.points_earned,
                "points_balance": case((newer, new.points_balance), else_=P.points_balance),
                "points_balance_at": case(
                    (newer, new.points_balance_at), else_=P.points_balance_at
                ),
                "updated_at": func.clock_timestamp(),
            },
        ),
        values,
    )
    await refresh_members(session, sorted(totals), events[-1].type)


async def on_points_earned(session: AsyncSession, event: CloudEvent) -> None:
    await on_points_earned_batch(session, [event])


async def on_points_redeemed(session: AsyncSession, event: CloudEvent) -> None:
    data = PointsRedeemedV1.of(event)
    member, at = data.member_id, data.occurred_at
    await _activity(session, event, member, "redemption", at)
    await _points_balance(
        session,
        event,
        member,
        at,
        data.balance_available,
        points_redeemed=P.points_redeemed + abs(data.points),
    )


async def on_points_expired(session: AsyncSession, event: CloudEvent) -> None:
    data = PointsExpiredV1.of(event)
    await _points_balance(
        session,
        event,
        data.member_id,
        data.occurred_at,
        data.balance_available,
        points_expired=P.points_expired + abs(data.points),
    )


BalanceOnly = PointsAdjustedV1 | PointsReversedV1 | PointsMaturedV1 | RedemptionCancelledV1


def on_points_balance_only(model: type[BalanceOnly]) -> Handler:
    """adjusted / reversed / matured / redemption_cancelled: only the balance moves here."""

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        data = model.of(event)
        await _points_balance(
            session, event, data.member_id, data.occurred_at, data.balance_available
        )

    return handle


async def _activity(
    session: AsyncSession, event: CloudEvent, member: str, kind: str, at: datetime
) -> None:
    await session.execute(
        insert(MemberActivity)
        .values(event_id=event.id, member_id=member, kind=kind, occurred_at=at)
        .on_conflict_do_nothing()
    )


_INTERACTION_COUNTERS = {
    "review": "reviews",
    "share": "shares",
    "check_in": "check_ins",
    "checkin": "check_ins",
    "login": "logins",
    "page_view": "page_views",
    "activity": "activities",
    "referral": "referrals",
}


async def _interacted(
    session: AsyncSession, event: CloudEvent, member: str, kind: str, counter: str, at: datetime
) -> None:
    """An interaction of ``kind``: its activity row, one more on the profile's ``counter``,
    the last interaction time, then the member's tags and segments."""
    await _activity(session, event, member, kind, at)
    await _bump(
        session,
        member,
        **{counter: P[counter] + 1},
        last_interaction_at=func.greatest(P.last_interaction_at, at),
    )
    await refresh_member(session, member, event.type)


async def on_interaction(session: AsyncSession, event: CloudEvent) -> None:
    data = InteractionRecordedV1.of(event)
    kind = data.type.lower()
    counter = _INTERACTION_COUNTERS.get(kind, "activities")
    await _interacted(session, event, data.member_id, kind, counter, data.occurred_at)


async def on_check_in(session: AsyncSession, event: CloudEvent) -> None:
    data = MemberCheckedInV1.of(event)
    await _interacted(session, event, data.member_id, "check_in", "check_ins", data.occurred_at)


async def on_complaint_opened(session: AsyncSession, event: CloudEvent) -> None:
    data = ComplaintOpenedV1.of(event)
    member, at = data.member_id, data.opened_at
    await _activity(session, event, member, "complaint", at)
    await _bump(
        session,
        member,
        complaints=P.complaints + 1,
        first_complaint_at=func.least(P.first_complaint_at, at),
    )
    await refresh_member(session, member, event.type)


async def on_survey_completed(session: AsyncSession, event: CloudEvent) -> None:
    data = SurveyCompletedV1.of(event)
    member = data.member_id
    await _activity(session, event, member, "survey", data.submitted_at)
    values: dict[str, Any] = {"surveys": P.surveys + 1}
    if data.nps is not None:
        values["nps_last"] = data.nps
    if data.csat is not None:
        values["csat_sum"] = P.csat_sum + cast(Decimal(data.csat), Numeric)
        values["csat_count"] = P.csat_count + 1
    await _bump(session, member, **values)
    await refresh_member(session, member, event.type)


async def on_member_erased(session: AsyncSession, event: CloudEvent) -> None:
    await erase_member(session, MemberErasedV1.of(event).member_id)


async def on_members_enrolled(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Set-based ``member.enrolled`` (a history import enrols thousands at once): what
    ``on_member_enrolled`` does one event at a time, in three statements for the batch."""
    members: dict[str, dict[str, Any]] = {}
    tiers: list[dict[str, Any]] = []
    for event in events:
        data = MemberEnrolledV1.of(event)
        row = members.setdefault(
            data.member_id, {"member_id": data.member_id, "enrolled_at": data.enrolled_at}
        )
        row["enrolled_at"] = min(row["enrolled_at"], data.enrolled_at)
        row["timezone"] = data.timezone  # the last one, as one event at a time leaves it
        tiers.append(_tier_row(event.id, data.member_id, data.tier, data.enrolled_at))
    await session.execute(
        _ENROL,
        {
            "members": list(members),
            "ats": [r["enrolled_at"] for r in members.values()],
            "zones": [r["timezone"] for r in members.values()],
        },
    )
    await _set_tiers(session, tiers)
    await refresh_members(session, list(members), events[-1].type)


async def on_tiers_changed(session: AsyncSession, events: list[CloudEvent]) -> None:
    """Set-based ``tier.changed``: ``on_tier_changed`` for a whole batch."""
    tiers = []
    for event in events:
        data = TierChangedV1.of(event)
        tiers.append(_tier_row(event.id, data.member_id, data.to_tier, data.occurred_at))
    members = list(dict.fromkeys(t["member_id"] for t in tiers))
    await session.execute(_ENSURE_PROFILES, {"members": members})
    await _set_tiers(session, tiers)
    await refresh_members(session, members, events[-1].type)


def _tier_row(event_id: str, member: str, tier: str, at: datetime) -> dict[str, Any]:
    return {"event_id": event_id, "member_id": member, "tier": tier, "changed_at": at}


# Batch statements over arrays (unnest): one statement text whatever the batch's size, so
# SQLAlchemy compiles it once and asyncpg prepares it once; a multi-row VALUES was a new
# statement of a thousand rows to compile, send, parse and plan at every batch (~12% of
# the consumer's CPU in a history import).
_ENSURE_PROFILES = text(
    "INSERT INTO profiles (member_id) SELECT unnest(CAST(:members AS text[])) "
    "ON CONFLICT (member_id) DO NOTHING"
)
_ENROL = text(
    "INSERT INTO profiles AS p (member_id, enrolled_at, timezone, updated_at) "
    "SELECT t.member_id, t.enrolled_at, t.timezone, clock_timestamp() "
    "FROM unnest(CAST(:members AS text[]), CAST(:ats AS timestamptz[]), "
    "CAST(:zones AS text[])) AS t(member_id, enrolled_at, timezone) "
    "ON CONFLICT (member_id) DO UPDATE SET "
    "enrolled_at = least(p.enrolled_at, excluded.enrolled_at), "
    "timezone = excluded.timezone, updated_at = clock_timestamp()"
)
_TIER_HISTORY = text(
    "INSERT INTO tier_changes (event_id, member_id, tier, changed_at) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:members AS text[]), "
    "CAST(:tiers AS text[]), CAST(:ats AS timestamptz[])) ON CONFLICT DO NOTHING"
)
_SET_TIERS = text(
    "UPDATE profiles p SET tier = t.tier, tier_changed_at = t.changed_at "
    "FROM unnest(CAST(:members AS text[]), CAST(:tiers AS text[]), "
    "CAST(:ats AS timestamptz[])) AS t(member_id, tier, changed_at) "
    "WHERE p.member_id = t.member_id "
    "AND (p.tier_changed_at IS NULL OR p.tier_changed_at <= t.changed_at)"
)


async def _set_tiers(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """The tier history rows, then each member's newest tier (by time; of equal times the
    later in the batch, as one event at a time leaves it)."""
    await session.execute(
        _TIER_HISTORY,
        {
            "ids": [r["event_id"] for r in rows],
            "members": [r["member_id"] for r in rows],
            "tiers": [r["tier"] for r in rows],
            "ats": [r["changed_at"] for r in rows],
        },
    )
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        held = newest.get(row["member_id"])
        if held is None or held["changed_at"] <= row["changed_at"]:
            newest[row["member_id"]] = row
    await session.execute(
        _SET_TIERS,
        {
            "members": list(newest),
            "tiers": [r["tier"] for r in newest.values()],
            "ats": [r["changed_at"] for r in newest.values()],
        },
    )


BatchHandler = Callable[[AsyncSession, list[CloudEvent]], Awaitable[None]]

# The high-volume types, applied set-based once per consumed batch (their effects
# commute with every other handler's: sums, least/greatest, newest-wins).
BATCH_HANDLERS: dict[str, BatchHandler] = {
    OrderRecordedV1.TYPE: on_orders_recorded,
    PointsEarnedV1.TYPE: on_points_earned_batch,
    MemberEnrolledV1.TYPE: on_members_enrolled,
    TierChangedV1.TYPE: on_tiers_changed,
}

# Types whose effect does not commute with the others': the consumer applies the
# batched events and the pending tag/segment refresh before running one.
BARRIERS: frozenset[str] = frozenset({MemberErasedV1.TYPE})

HANDLERS: dict[str, Handler] = {
    MemberEnrolledV1.TYPE: on_member_enrolled,
    MemberErasedV1.TYPE: on_member_erased,
    TierChangedV1.TYPE: on_tier_changed,
    OrderRecordedV1.TYPE: on_order_recorded,
    OrderRefundedV1.TYPE: on_order_refunded,
    PointsEarnedV1.TYPE: on_points_earned,
    PointsRedeemedV1.TYPE: on_points_redeemed,
    PointsExpiredV1.TYPE: on_points_expired,
    **{m.TYPE: on_points_balance_only(m) for m in BalanceOnly.__args__},
    InteractionRecordedV1.TYPE: on_interaction,
    MemberCheckedInV1.TYPE: on_check_in,
    ComplaintOpenedV1.TYPE: on_complaint_opened,
    SurveyCompletedV1.TYPE: on_survey_completed,
}
