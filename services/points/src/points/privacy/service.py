"""Erasure and export of a member's data (DELETE /v1/members/{id}, GET .../export).

Erasure removes the personal data this service holds (name, email, phone, birthday, the
attributes sent with interactions, coupon codes and channels on orders, the reasons
written on ledger entries, remembered Idempotency-Key answers, the member's events still
in the outbox, dead letters and parked rows), and then replaces the shop's customer id by
a pseudonym, ``erased:<HMAC-SHA256(erasure_hmac_secret, id)>``, in the member's row and (through
``ON UPDATE CASCADE``) in every ledger row, lot, balance, order, refund, redemption,
check-in and interaction: the books still balance, and no row keeps the id. A tombstone
(the same keyed hash) goes into ``erased_members``; ``loyalty.member.erased.v1``
{member_id, erased_at} tells the other services to erase theirs. Erasing twice answers
the first erasure again.

After it, the id is refused everywhere with 409 ``member-erased`` (``refuse_erased``
turns the 404 / 422 an unknown id would get into that, and enrolment checks the
tombstone): nothing a caller sends brings the member back. Refunds of orders recorded
before the erasure still go through (the shop has refunded the money; the kept ledger
must follow) and change the pseudonymous balance; no event about a pseudonymous member
is published (``points.events.publish``), so nothing about them reaches another service.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared import erasure, idempotency
from loyalty_shared.problems import ProblemError
from points import events
from points.actions.models import check_ins, interactions
from points.db import idempotency_keys
from points.errors import MemberNotFound, UnknownMember
from points.ledger import service as ledger
from points.ledger.models import Balance, entries, lots
from points.members.models import Member
from points.orders.models import orders
from points.redemptions.models import Redemption

_LOCK_LIVE = ledger.balance_lock_statement(live_only=True)

ERASED_PREFIX = "erased:"


def pseudonym(key: str, member_id: str) -> str:
    """What the member's rows are kept under once erased (the tombstone's keyed hash)."""
    return ERASED_PREFIX + erasure.member_hash(key, member_id)


def is_pseudonym(member_id: str | None) -> bool:
    return member_id is not None and member_id.startswith(ERASED_PREFIX)


async def lock_live_member(session: AsyncSession, member_id: str) -> ledger.LockedBalance:
    """The member's balance row lock (one statement); 404 if unknown or erased.

    ``erase`` takes the same lock, so once this returns the member stays un-erased until the
    transaction ends.
    """
    conn = await session.connection()
    row = (await conn.execute(_LOCK_LIVE, {"p_member_id": member_id})).first()
    if row is None:
        raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
    return ledger.LockedBalance(*row)  # the ledger's lock statement, its columns in order


async def erase(
    session: AsyncSession, member_id: str, *, key: str, now: datetime | None = None
) -> datetime:
    """Erase the member's personal data; returns when it was (first) erased."""
    now = now or datetime.now(UTC)
    kept_as = pseudonym(key, member_id)
    found = (
        await session.execute(select(Member.member_id).where(Member.member_id == member_id))
    ).first()
    if found is None:
        erased_at = (
            await session.execute(select(Member.erased_at).where(Member.member_id == kept_as))
        ).scalar_one_or_none()
        if erased_at is None:
            raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
        return erased_at  # erased before
    await ledger.lock_member(session, member_id)  # serialise with the member's ledger writes
    await session.execute(
        update(Member)
        .where(Member.member_id == member_id)
        .values(name=None, email=None, phone=None, birthday=None, erased_at=now)
    )
    # a checkout that read the member as live before this must not record an order now
    await ledger.touch_balance(session, member_id)
    await _scrub(session, member_id)
    await session.execute(
        update(Member).where(Member.referred_by == member_id).values(referred_by=kept_as)
    )
    await session.execute(
        update(Member).where(Member.member_id == member_id).values(member_id=kept_as)
    )
    await erasure.record_tombstone(session, key, member_id)
    await events.publish(
        session,
        events.points_event(
            events.MEMBER_ERASED,
            member_id,
            {"member_id": member_id, "erased_at": now.isoformat()},
            time=now,
        ),
    )
    return now


async def _scrub(session: AsyncSession, member_id: str) -> None:
    """The free texts and remembered answers about the member, before the id goes."""
    await session.execute(
        update(interactions).where(interactions.c.member_id == member_id).values(attributes={})
    )
    await session.execute(
        update(orders).where(orders.c.member_id == member_id).values(coupon_used=None, channel=None)
    )
    await session.execute(
        update(entries)
        .where(entries.c.member_id == member_id, entries.c.reason.is_not(None))
        .values(reason=None)
    )
    await idempotency.forget_member(session, idempotency_keys, member_id)
    await erasure.forget_member(session, member_id)


async def refuse_erased(request: Request, exc: Exception) -> JSONResponse:
    """A write naming an erased member answers 409 ``member-erased`` (not 404 / 422)."""
    from loyalty_shared.problems import _handle_problem  # the one renderer of problems

    assert isinstance(exc, ProblemError)
    member_id = exc.extensions.get("member_id")
    # reads of an erased member answer 404 like any unknown member; writes say why they fail
    if isinstance(member_id, str) and request.method not in ("GET", "HEAD"):
        settings = request.app.state.settings
        async with request.app.state.engine.connect() as conn:
            if is_pseudonym(member_id) or await erasure.is_erased(
                conn, settings.erasure_key(), member_id
            ):
                exc = erasure.MemberErased(
                    f"Member {member_id!r} was erased; nothing more is recorded about them",
                    member_id=member_id,
                    errors=exc.extensions.get("errors", []),
                )
    return await _handle_problem(request, exc)


def install_erased_member_answers(app: FastAPI) -> None:
    for unknown in (MemberNotFound, UnknownMember):
        app.add_exception_handler(unknown, refuse_erased)


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result.all()]


# what the export holds besides the member and its balance: section -> (its columns, the
# column naming the member, the order of its rows)
_EXPORTED: dict[str, tuple[tuple[Any, ...], Any, tuple[Any, ...]]] = {
    "ledger": (
        (
            entries.c.id,
            entries.c.entry_type,
            entries.c.points,
            entries.c.pending_delta,
            entries.c.debt_delta,
            entries.c.lot_id,
            entries.c.reason,
            entries.c.source_type,
            entries.c.source_id,
            entries.c.occurred_at,
            entries.c.created_at,
        ),
        entries.c.member_id,
        (entries.c.id,),
    ),
    "lots": (
        (
            lots.c.id,
            lots.c.points,
            lots.c.remaining,
            lots.c.status,
            lots.c.earned_at,
            lots.c.expires_at,
        ),
        lots.c.member_id,
        (lots.c.id,),
    ),
    "orders": (
        (
            orders.c.order_id,
            orders.c.amount,
            orders.c.currency,
            orders.c["items"],
            orders.c.coupon_used,
            orders.c.channel,
            orders.c.occurred_at,
            orders.c.points_earned,
        ),
        orders.c.member_id,
        (orders.c.occurred_at,),
    ),
    "redemptions": (
        (
            Redemption.redemption_id,
            Redemption.reward_id,
            Redemption.quantity,
            Redemption.order_id,
            Redemption.points,
            Redemption.status,
            Redemption.created_at,
        ),
        Redemption.member_id,
        (),
    ),
    "check_ins": (
        (check_ins.c.local_day, check_ins.c.points, check_ins.c.occurred_at),
        check_ins.c.member_id,
        (),
    ),
    "interactions": (
        (
            interactions.c.event_id,
            interactions.c.type,
            interactions.c.occurred_at,
            interactions.c.attributes,
            interactions.c.points,
        ),
        interactions.c.member_id,
        (),
    ),
}
_PROFILE = (
    "member_id",
    "name",
    "email",
    "phone",
    "birthday",
    "timezone",
    "referral_code",
    "referred_by",
    "tier",
    "enrolled_at",
)


async def export(session: AsyncSession, member_id: str) -> dict[str, Any]:
    """Everything this service holds about the member (JSON-ready through pydantic)."""
    member = (
        await session.execute(
            select(Member).where(Member.member_id == member_id, Member.erased_at.is_(None))
        )
    ).scalar_one_or_none()
    if member is None:
        raise MemberNotFound(f"No member with id {member_id!r}", member_id=member_id)
    balance = (
        await session.execute(select(Balance).where(Balance.member_id == member_id))
    ).scalar_one()
    exported: dict[str, Any] = {
        "member": {c: getattr(member, c) for c in _PROFILE},
        "balance": {
            "available": balance.available,
            "pending": balance.pending,
            "debt": balance.debt,
            "lifetime_earned": balance.lifetime_earned,
        },
    }
    for section, (columns, whose, order) in _EXPORTED.items():
        query = select(*columns).where(whose == member_id).order_by(*order)
        exported[section] = _rows(await session.execute(query))
    return exported
