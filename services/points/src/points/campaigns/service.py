"""Campaign management (create, edit, deactivate, list) and loading the running ones."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import Conflict, NotFound, Unprocessable
from loyalty_shared.replays import fingerprint, replay_or_conflict
from points.campaigns.calculator import Campaign, OrderFacts, apply_campaigns
from points.campaigns.models import CampaignRow
from points.campaigns.schemas import (
    CampaignIn,
    CampaignLineOut,
    CampaignOut,
    CampaignPage,
    CampaignPatch,
    CampaignPreviewIn,
    CampaignPreviewOut,
    CampaignReplace,
)
from points.tiers.service import UnknownTier, load_ladder, multiplier

# which kind-specific fields each kind needs (True) or forbids (False)
_KIND_FIELDS: dict[str, dict[str, bool]] = {
    "category_multiplier": {
        "categories": True,
        "multiplier": True,
        "bonus_points": False,
        "threshold": False,
    },
    "first_order_bonus": {
        "categories": False,
        "multiplier": False,
        "bonus_points": True,
        "threshold": False,
    },
    "spend_threshold_bonus": {
        "categories": False,
        "multiplier": False,
        "bonus_points": True,
        "threshold": True,
    },
    "fixed_bonus": {
        "categories": False,
        "multiplier": False,
        "bonus_points": True,
        "threshold": False,
    },
}
_NOT_NULL_ON_PATCH = (
    "name",
    "starts_at",
    "ends_at",
    "stacking",
    "priority",
    "active",
    "eligible_tiers",
    "categories",
)


class CampaignNotFound(NotFound):
    slug = "campaign-not-found"
    title = "Campaign not found"


class CampaignExists(Conflict):
    slug = "campaign-exists"
    title = "Campaign id already used with a different body"


class InvalidCampaign(Unprocessable):
    slug = "validation-error"
    title = "Request validation failed"


def _field_error(field: str, message: str) -> dict[str, str]:
    return {"field": f"body.{field}", "message": message, "type": "value_error"}


async def _validate(session: AsyncSession, kind: str, values: dict[str, Any]) -> None:
    """Cross-field rules a schema cannot express; raises 422 naming every bad field."""
    errors: list[dict[str, str]] = []
    if values["ends_at"] <= values["starts_at"]:
        errors.append(_field_error("ends_at", "ends_at must be after starts_at"))
    for name, required in _KIND_FIELDS[kind].items():
        present = bool(values.get(name))
        if required and not present:
            errors.append(_field_error(name, f"required for kind {kind}"))
        elif not required and present:
            errors.append(_field_error(name, f"not used by kind {kind}"))
    if values.get("eligible_tiers"):
        codes = {t.code for t in (await load_ladder(session)).tiers}
        unknown = [c for c in values["eligible_tiers"] if c not in codes]
        if unknown:
            errors.append(_field_error("eligible_tiers", f"unknown tier code(s): {unknown}"))
    if errors:
        fields = ", ".join(e["field"] for e in errors)
        raise InvalidCampaign(f"{len(errors)} invalid field(s): {fields}", errors=errors)


def _out(row: CampaignRow) -> CampaignOut:
    return CampaignOut.model_validate(row, from_attributes=True)


def to_campaign(row: CampaignRow) -> Campaign:
    return Campaign(
        campaign_id=row.campaign_id,
        kind=row.kind,  # type: ignore[arg-type]
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        stackable=row.stacking == "stackable",
        priority=row.priority,
        active=row.active,
        eligible_tiers=frozenset(row.eligible_tiers),
        categories=frozenset(row.categories),
        multiplier=row.multiplier,
        bonus_points=row.bonus_points,
        threshold=row.threshold,
    )


async def create(session: AsyncSession, data: CampaignIn) -> tuple[CampaignOut, bool]:
    """Create a campaign; the same id with the same body again returns it (created=False)."""
    values = data.model_dump()
    await _validate(session, data.kind, values)
    digest = fingerprint(data.model_dump(mode="json"))
    now = datetime.now(UTC)
    inserted = (
        await session.execute(
            insert(CampaignRow)
            .values(**values, request_hash=digest, created_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=[CampaignRow.campaign_id])
            .returning(CampaignRow)
        )
    ).scalar_one_or_none()
    if inserted is not None:
        return _out(inserted), True
    existing = await _row(session, data.campaign_id)
    return replay_or_conflict(
        existing.request_hash,
        digest,
        lambda: (_out(existing), False),
        lambda: CampaignExists(
            f"Campaign {data.campaign_id!r} already exists with a different definition; "
            "edit it with PUT or PATCH",
            campaign_id=data.campaign_id,
        ),
    )


async def _row(session: AsyncSession, campaign_id: str, *, lock: bool = False) -> CampaignRow:
    query = select(CampaignRow).where(CampaignRow.campaign_id == campaign_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise CampaignNotFound(f"No campaign with id {campaign_id!r}", campaign_id=campaign_id)
    return row


async def get(session: AsyncSession, campaign_id: str) -> CampaignOut:
    return _out(await _row(session, campaign_id))


async def replace(session: AsyncSession, campaign_id: str, data: CampaignReplace) -> CampaignOut:
    """PUT: the whole definition (kind included) is replaced."""
    row = await _row(session, campaign_id, lock=True)
    values = data.model_dump()
    await _validate(session, data.kind, values)
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = datetime.now(UTC)
    await session.flush()
    return _out(row)


async def patch(session: AsyncSession, campaign_id: str, data: CampaignPatch) -> CampaignOut:
    """PATCH: only the fields sent change (``{"active": false}`` deactivates)."""
    changes = data.model_dump(exclude_unset=True)
    nulls = [name for name in _NOT_NULL_ON_PATCH if name in changes and changes[name] is None]
    if nulls:
        errors = [_field_error(name, "may not be null") for name in nulls]
        raise InvalidCampaign(f"{len(errors)} invalid field(s)", errors=errors)
    row = await _row(session, campaign_id, lock=True)
    current = _out(row).model_dump()
    merged = {**current, **changes}
    await _validate(session, row.kind, merged)
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = datetime.now(UTC)
    await session.flush()
    return _out(row)


async def list_campaigns(
    session: AsyncSession,
    *,
    active: bool | None = None,
    running_at: datetime | None = None,
    kind: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> CampaignPage:
    query = select(CampaignRow).order_by(CampaignRow.campaign_id).limit(limit + 1)
    if active is not None:
        query = query.where(CampaignRow.active.is_(active))
    if running_at is not None:
        query = query.where(
            CampaignRow.active.is_(True),
            CampaignRow.starts_at <= running_at,
            CampaignRow.ends_at > running_at,
        )
    if kind is not None:
        query = query.where(CampaignRow.kind == kind)
    if after is not None:
        query = query.where(CampaignRow.campaign_id > after)
    rows = list((await session.execute(query)).scalars().all())
    more = len(rows) > limit
    rows = rows[:limit]
    return CampaignPage(
        items=[_out(r) for r in rows], next_cursor=rows[-1].campaign_id if more else None
    )


async def active_campaigns(session: AsyncSession, at: datetime) -> list[Campaign]:
    """Campaigns running at ``at`` (active and ``starts_at <= at < ends_at``), for the order flow.

    Uses the partial index on (starts_at, ends_at) WHERE active; one round trip.
    """
    return await campaigns_running_between(session, at, at)


async def campaigns_running_between(
    session: AsyncSession, earliest: datetime, latest: datetime
) -> list[Campaign]:
    """Every active campaign that runs at some instant of ``[earliest, latest]`` (the history
    import's batch: each order then takes those running at its own ``occurred_at``)."""
    rows = (
        (
            await session.execute(
                select(CampaignRow).where(
                    CampaignRow.active.is_(True),
                    CampaignRow.starts_at <= latest,
                    CampaignRow.ends_at > earliest,
                )
            )
        )
        .scalars()
        .all()
    )
    return [to_campaign(r) for r in rows]


async def preview(
    session: AsyncSession, earn_rate: Decimal, data: CampaignPreviewIn
) -> CampaignPreviewOut:
    """Dry run of the calculator against the campaigns running at ``occurred_at``."""
    at = data.occurred_at or datetime.now(UTC)
    ladder = await load_ladder(session)
    try:
        tier_multiplier = multiplier(ladder, data.member_tier)
    except UnknownTier as exc:
        errors = [_field_error("member_tier", "unknown tier code")]
        raise InvalidCampaign("1 invalid field(s): body.member_tier", errors=errors) from exc
    base = int((data.amount * earn_rate).to_integral_value(rounding=ROUND_FLOOR))
    facts = OrderFacts.from_items(
        amount=data.amount,
        occurred_at=at,
        is_first_order=data.is_first_order,
        member_tier=data.member_tier,
        items=data.items,
    )
    result = apply_campaigns(facts, await active_campaigns(session, at), base, tier_multiplier)
    return CampaignPreviewOut(
        base_points=base,
        tier_multiplier=tier_multiplier,
        bonus_points=result.bonus_points,
        applied=result.applied,
        excluded=result.excluded,
        lines=[
            CampaignLineOut(campaign_id=x.campaign_id, kind=x.kind, points=x.points)
            for x in result.lines
        ],
    )
