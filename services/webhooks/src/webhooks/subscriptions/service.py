"""Subscriptions: made, changed, paused, resumed, deleted; their secrets rotated."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.ids import uuid7
from loyalty_shared.problems import NotFound, Unprocessable
from webhooks.settings import WebhooksSettings
from webhooks.subscriptions.models import Subscription
from webhooks.subscriptions.schemas import (
    RotateIn,
    SecretOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)
from webhooks.subscriptions.targets import TargetPolicy, TargetRefused, check_url

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


class TargetNotAllowed(Unprocessable):
    slug = "webhook-target-refused"
    title = "Webhook URL refused"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def key_label(key_id: int | None) -> str | None:
    return None if key_id is None else f"k{key_id}"


def policy_of(settings: WebhooksSettings) -> TargetPolicy:
    return TargetPolicy.for_environment(
        is_dev=settings.is_dev, allow_private=settings.allow_private_targets
    )


async def _check_target(url: str, settings: WebhooksSettings) -> None:
    try:
        await check_url(url, policy_of(settings))
    except TargetRefused as exc:
        raise TargetNotAllowed(
            str(exc), errors=[{"field": "body.url", "message": str(exc), "type": "target_refused"}]
        ) from exc


def out(sub: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=sub.id,
        url=sub.url,
        description=sub.description,
        event_types=list(sub.event_types),
        status=sub.status,
        paused_reason=sub.paused_reason,
        paused_at=sub.paused_at,
        secret_key_id=f"k{sub.secret_key_id}",
        previous_secret_expires_at=sub.previous_secret_expires_at if sub.previous_secret else None,
        failed_deliveries_in_row=sub.failed_deliveries_in_row,
        created_by=sub.created_by,
        created_at=sub.created_at,
        updated_at=sub.updated_at,
    )


async def get(session: AsyncSession, subscription_id: str, *, lock: bool = False) -> Subscription:
    query = select(Subscription).where(Subscription.id == subscription_id)
    if lock:
        query = query.with_for_update()
    sub = (await session.execute(query)).scalar_one_or_none()
    if sub is None:
        raise NotFound(f"No webhook subscription {subscription_id}")
    return sub


async def create(
    session: AsyncSession, settings: WebhooksSettings, body: SubscriptionIn, who: str | None
) -> SubscriptionCreated:
    await _check_target(body.url, settings)
    sub = Subscription(
        id=uuid7(),
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        status="active",
        secret=new_secret(),
        secret_key_id=1,
        failed_deliveries_in_row=0,
        created_by=who,
    )
    session.add(sub)
    await session.flush()
    await session.refresh(sub)
    return SubscriptionCreated(**out(sub).model_dump(), secret=sub.secret)


async def list_all(session: AsyncSession) -> list[SubscriptionOut]:
    rows = await session.execute(select(Subscription).order_by(Subscription.created_at))
    return [out(s) for s in rows.scalars()]


async def update(
    session: AsyncSession, settings: WebhooksSettings, subscription_id: str, body: SubscriptionPatch
) -> SubscriptionOut:
    sub = await get(session, subscription_id, lock=True)
    if body.url is not None and body.url != sub.url:
        await _check_target(body.url, settings)
        sub.url = body.url
    if body.event_types is not None:
        sub.event_types = body.event_types
    if "description" in body.model_fields_set:
        sub.description = body.description
    sub.updated_at = func.now()
    await session.flush()
    await session.refresh(sub)
    return out(sub)


async def pause(
    session: AsyncSession, subscription_id: str, reason: str | None, who: str | None
) -> SubscriptionOut:
    sub = await get(session, subscription_id, lock=True)
    if sub.status != "paused":
        sub.status = "paused"
        sub.paused_reason = reason or f"paused by {who or 'an operator'}"
        sub.paused_at = func.now()
        sub.updated_at = func.now()
        await session.flush()
        await session.refresh(sub)
    return out(sub)


async def resume(session: AsyncSession, subscription_id: str) -> SubscriptionOut:
    """Active again: its pending deliveries are due now (in order), the failure count is 0."""
    sub = await get(session, subscription_id, lock=True)
    if sub.status != "active":
        sub.status = "active"
        sub.paused_reason = None
        sub.paused_at = None
        sub.failed_deliveries_in_row = 0
        sub.updated_at = func.now()
        await session.execute(
            text(
                "UPDATE webhook_deliveries SET next_attempt_at = now() "
                "WHERE subscription_id = :id AND status = 'pending' AND next_attempt_at > now()"
            ),
            {"id": sub.id},
        )
        await session.flush()
        await session.refresh(sub)
    return out(sub)


async def delete(session: AsyncSession, subscription_id: str) -> None:
    """The subscription, its deliveries (pending ones are never sent) and their attempts."""
    sub = await get(session, subscription_id, lock=True)
    await session.delete(sub)


async def rotate_secret(
    session: AsyncSession,
    settings: WebhooksSettings,
    subscription_id: str,
    body: RotateIn,
    now: datetime,
) -> SecretOut:
    """A new secret signs from now on; the current one signs too until the overlap ends
    (an older previous secret stops at once: two at most)."""
    sub = await get(session, subscription_id, lock=True)
    overlap = (
        settings.rotation_overlap_seconds if body.overlap_seconds is None else body.overlap_seconds
    )
    previous_id: int | None = None
    if overlap > 0:
        sub.previous_secret = sub.secret
        sub.previous_secret_expires_at = now + timedelta(seconds=overlap)
        previous_id = sub.secret_key_id
    else:
        sub.previous_secret = None
        sub.previous_secret_expires_at = None
    sub.secret = new_secret()
    sub.secret_key_id += 1
    sub.updated_at = func.now()
    await session.flush()
    return SecretOut(
        id=sub.id,
        secret=sub.secret,
        secret_key_id=f"k{sub.secret_key_id}",
        previous_key_id=key_label(previous_id),
        previous_secret_expires_at=sub.previous_secret_expires_at,
    )
