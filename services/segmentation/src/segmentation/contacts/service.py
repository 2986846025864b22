"""Contact policy: a frequency cap per member over a rolling period, and channel opt-outs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import Conflict
from segmentation.analytics import config
from segmentation.contacts.models import Contact, ContactPreference
from segmentation.contacts.schemas import ContactCheckOut, ContactOut, ContactPolicy, PreferencesOut
from segmentation.settings import SegmentationSettings


class ContactNotAllowed(Conflict):
    slug = "contact-not-allowed"
    title = "Contact not allowed"


class ContactIdReused(Conflict):
    slug = "contact-id-reused"
    title = "Contact id already used for another contact"


async def policy(session: AsyncSession, settings: SegmentationSettings) -> ContactPolicy:
    stored = await config.get_entry(session, config.CONTACT_POLICY_KEY)
    if stored:
        return ContactPolicy.model_validate(stored)
    return ContactPolicy(cap=settings.contact_cap, period_days=settings.contact_period_days)


async def set_policy(session: AsyncSession, value: ContactPolicy) -> ContactPolicy:
    await config.put_entry(session, config.CONTACT_POLICY_KEY, value.model_dump())
    return value


async def preferences(session: AsyncSession, member_id: str) -> PreferencesOut:
    pref = await session.get(ContactPreference, member_id)
    return PreferencesOut(
        member_id=member_id,
        preferred_channels=list(pref.preferred_channels) if pref else [],
        opted_out_channels=list(pref.opted_out_channels) if pref else [],
    )


async def set_preferences(
    session: AsyncSession, member_id: str, preferred: list[str], opted_out: list[str]
) -> PreferencesOut:
    stmt = insert(ContactPreference).values(
        member_id=member_id, preferred_channels=preferred, opted_out_channels=opted_out
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[ContactPreference.member_id],
            set_={"preferred_channels": preferred, "opted_out_channels": opted_out},
        )
    )
    return await preferences(session, member_id)


async def check(
    session: AsyncSession,
    settings: SegmentationSettings,
    member_id: str,
    channel: str,
    at: datetime | None = None,
) -> ContactCheckOut:
    at = at or datetime.now(UTC)
    rules = await policy(session, settings)
    since = at - timedelta(days=rules.period_days)
    recent = list(
        (
            await session.execute(
                select(Contact.contacted_at)
                .where(
                    Contact.member_id == member_id,
                    Contact.contacted_at > since,
                    Contact.contacted_at <= at,
                )
                .order_by(Contact.contacted_at)
            )
        ).scalars()
    )
    prefs = await preferences(session, member_id)
    reasons: list[str] = []
    next_allowed: datetime | None = None
    if channel in prefs.opted_out_channels:
        reasons.append(f"the member opted out of {channel}")
    if len(recent) >= rules.cap:
        reasons.append(
            f"{len(recent)} contacts in the last {rules.period_days} days "
            f"reach the cap of {rules.cap}"
        )
        if rules.cap > 0:
            # the oldest contact that must leave the window before one more fits
            next_allowed = recent[len(recent) - rules.cap] + timedelta(days=rules.period_days)
    return ContactCheckOut(
        member_id=member_id,
        channel=channel,
        allowed=not reasons,
        reasons=reasons,
        contacts_in_period=len(recent),
        cap=rules.cap,
        period_days=rules.period_days,
        next_allowed_at=next_allowed,
        preferred_channels=prefs.preferred_channels,
    )


async def record(
    session: AsyncSession,
    settings: SegmentationSettings,
    *,
    contact_id: str | None,
    member_id: str,
    channel: str,
    campaign: str | None,
    contacted_at: datetime | None,
) -> tuple[ContactOut, bool]:
    """Record a contact if the policy allows it; returns (contact, created)."""
    # one member's contacts are checked and written one at a time
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:m))"), {"m": f"contact:{member_id}"}
    )
    if contact_id:
        existing = await session.get(Contact, contact_id)
        if existing is not None:
            if (existing.member_id, existing.channel, existing.campaign) != (
                member_id,
                channel,
                campaign,
            ):
                raise ContactIdReused(f"contact {contact_id!r} was recorded with other values")
            verdict = await check(session, settings, member_id, channel, existing.contacted_at)
            return _out(existing, verdict), False
    at = contacted_at or (await session.execute(select(func.now()))).scalar_one()
    verdict = await check(session, settings, member_id, channel, at)
    if not verdict.allowed:
        raise ContactNotAllowed(
            "; ".join(verdict.reasons),
            reasons=verdict.reasons,
            next_allowed_at=verdict.next_allowed_at.isoformat()
            if verdict.next_allowed_at
            else None,
        )
    contact = Contact(
        contact_id=contact_id or f"ct_{uuid.uuid4().hex}",
        member_id=member_id,
        channel=channel,
        campaign=campaign,
        contacted_at=at,
    )
    session.add(contact)
    await session.flush()
    verdict.contacts_in_period += 1
    return _out(contact, verdict), True


def _out(contact: Contact, verdict: ContactCheckOut) -> ContactOut:
    return ContactOut(
        contact_id=contact.contact_id,
        member_id=contact.member_id,
        channel=contact.channel,
        campaign=contact.campaign,
        contacted_at=contact.contacted_at,
        contacts_in_period=verdict.contacts_in_period,
        cap=verdict.cap,
    )
