"""Erased stays erased: a tombstone per erased member, kept as a keyed hash, never the id.

When a member is erased, each service records ``HMAC-SHA256(erasure_hmac_secret, member_id)`` in
its ``erased_members`` table. From then on:

- the consumers (``loyalty_shared.inbox``) skip every event about that member except the
  erasure itself (an order, a refund, a survey answer published late, replayed after a
  broker loss or taken from a dead-letter list can't bring a profile back);
- writes that name the member answer 409 ``member-erased`` (``refuse_if_erased``).

The hash is keyed so that a list of tombstones can't be turned back into ids by hashing
every likely customer number; only a service that holds the key can ask "was X erased?".
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from sqlalchemy import Column, DateTime, MetaData, Table, Text, func, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loyalty_shared.problems import Conflict

MEMBER_ERASED = "loyalty.member.erased.v1"


def erased_members_table(metadata: MetaData) -> Table:
    return Table(
        "erased_members",
        metadata,
        Column("member_hash", Text, primary_key=True),
        Column("erased_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class MemberErased(Conflict):
    slug = "member-erased"
    title = "Member erased"


def member_hash(key: str, member_id: str) -> str:
    return hmac.new(key.encode(), member_id.encode(), hashlib.sha256).hexdigest()


async def record_tombstone(conn: AsyncConnection | AsyncSession, key: str, member_id: str) -> None:
    await conn.execute(
        text("INSERT INTO erased_members (member_hash) VALUES (:h) ON CONFLICT DO NOTHING"),
        {"h": member_hash(key, member_id)},
    )


async def erased_among(
    conn: AsyncConnection | AsyncSession, key: str, member_ids: Iterable[str]
) -> set[str]:
    """Which of these member ids were erased (one query)."""
    by_hash = {member_hash(key, m): m for m in set(member_ids)}
    if not by_hash:
        return set()
    rows = await conn.execute(
        text("SELECT member_hash FROM erased_members WHERE member_hash = ANY(:hashes)"),
        {"hashes": list(by_hash)},
    )
    return {by_hash[r.member_hash] for r in rows}


async def is_erased(conn: AsyncConnection | AsyncSession, key: str, member_id: str) -> bool:
    return bool(await erased_among(conn, key, [member_id]))


async def refuse_if_erased(
    conn: AsyncConnection | AsyncSession, key: str, member_id: str, *, field: str
) -> None:
    """409 ``member-erased`` for a write about an erased member (it would bring data back)."""
    if await is_erased(conn, key, member_id):
        raise MemberErased(
            "This member was erased; nothing more is recorded about them",
            errors=[{"field": field, "message": "member was erased", "type": "member_erased"}],
        )


async def forget_outbox(conn: AsyncConnection | AsyncSession, member_id: str) -> int:
    """Drop every outbox row about the member, sent or not, before the erasure event is
    enqueued. Sent rows are kept for a replay after a broker loss and hold the member's
    data; unsent ones would hold it for as long again once sent. Consumers lose nothing
    they would keep: they erase the member next (their facts of an erased member become
    anonymous aggregates at most)."""
    result = await conn.execute(text("DELETE FROM outbox WHERE key = :m"), {"m": member_id})
    return int(getattr(result, "rowcount", 0) or 0)


async def forget_member(conn: AsyncConnection | AsyncSession, member_id: str) -> None:
    """What the event pipeline holds about the member: outbox rows (sent and unsent), dead
    letters and parked rows (their payloads hold the member's data)."""
    await forget_outbox(conn, member_id)
    for table in ("dead_letters", "outbox_parked"):
        await conn.execute(text(f"DELETE FROM {table} WHERE key = :m"), {"m": member_id})
