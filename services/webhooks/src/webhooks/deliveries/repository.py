"""The deliveries' statements: made from events, claimed by the sender, finished, dropped.

A delivery is claimed by setting ``leased_until`` (and counting the attempt) in a short
transaction of its own; the POST happens outside any transaction; its outcome is written in
another. A worker killed between the two leaves the lease to run out, and the delivery is
attempted again: at least once, never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import CloudEvent

TEST_EVENT_TYPE = "loyalty.webhook.test.v1"

# One statement for a consumed batch: each event times each subscription that wants its
# type, in the events' order (ids follow it: one member's deliveries keep their order).
_FAN_OUT = text(
    """
    INSERT INTO webhook_deliveries
        (subscription_id, event_id, event_type, member_key, body, give_up_at)
    SELECT s.id, e.event_id, e.event_type, e.member_key, e.body,
           now() + make_interval(secs => :window)
    FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), CAST(:members AS text[]),
                CAST(:bodies AS text[])) WITH ORDINALITY AS e(event_id, event_type, member_key,
                                                              body, ord)
    JOIN webhook_subscriptions s ON e.event_type = ANY(s.event_types)
    ORDER BY e.ord, s.id
    ON CONFLICT (subscription_id, event_id) DO NOTHING
    """
)

# Due deliveries, per subscription no more than it has room for (its in-flight attempts,
# every worker's, count against max_in_flight_per_subscription): a subscription whose
# endpoint hangs fills its own slots and no one else's. A member's delivery waits while an
# older one of the same member to the same subscription is pending (their order).
_CLAIM = text(
    """
    WITH picked AS (
        SELECT x.id
        FROM webhook_subscriptions s
        CROSS JOIN LATERAL (
            SELECT d.id, d.next_attempt_at
            FROM webhook_deliveries d
            WHERE d.subscription_id = s.id
              AND d.status = 'pending'
              AND d.next_attempt_at <= now()
              AND (d.leased_until IS NULL OR d.leased_until < now())
              AND (s.status = 'active' OR d.event_type = :test_type)
              AND NOT EXISTS (
                  SELECT 1 FROM webhook_deliveries e
                  WHERE e.subscription_id = d.subscription_id
                    AND e.member_key = d.member_key
                    AND e.status = 'pending'
                    AND e.id < d.id
              )
            ORDER BY d.next_attempt_at, d.id
            LIMIT GREATEST(:per_subscription - (
                SELECT count(*) FROM webhook_deliveries f
                WHERE f.subscription_id = s.id AND f.status = 'pending'
                  AND f.leased_until >= now()
            ), 0)
        ) x
        ORDER BY x.next_attempt_at, x.id
        LIMIT :room
    ), locked AS (
        SELECT d.id FROM webhook_deliveries d
        WHERE d.id IN (SELECT id FROM picked)
          AND d.status = 'pending'
          AND (d.leased_until IS NULL OR d.leased_until < now())
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE webhook_deliveries d
    SET leased_until = now() + make_interval(secs => :lease), attempts = d.attempts + 1
    FROM locked, webhook_subscriptions s
    WHERE d.id = locked.id AND s.id = d.subscription_id
    RETURNING d.id, d.subscription_id, d.event_id, d.event_type, d.body, d.attempts,
              d.give_up_at, s.url, s.secret, s.secret_key_id, s.previous_secret,
              s.previous_secret_expires_at, now() AS claimed_at
    """
)


@dataclass(frozen=True)
class Claimed:
    id: int
    subscription_id: str
    event_id: str
    event_type: str
    body: str
    attempt: int
    give_up_at: datetime
    url: str
    secret: str
    secret_key_id: int
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    claimed_at: datetime


def delivery_body(event: CloudEvent) -> str:
    return orjson.dumps(event.model_dump(mode="json")).decode()


async def fan_out(session: AsyncSession, events: Sequence[CloudEvent], window: float) -> None:
    if not events:
        return
    await session.execute(
        _FAN_OUT,
        {
            "ids": [e.id for e in events],
            "types": [e.type for e in events],
            "members": [e.subject for e in events],
            "bodies": [delivery_body(e) for e in events],
            "window": window,
        },
    )


async def forget_member(session: AsyncSession, member_id: str) -> int:
    """Every delivery about the member, whatever its status (their bodies hold the member's
    id and data); their attempts go with them."""
    result = await session.execute(
        text("DELETE FROM webhook_deliveries WHERE member_key = :m"), {"m": member_id}
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def claim(
    session: AsyncSession, *, room: int, per_subscription: int, lease: float
) -> list[Claimed]:
    rows = await session.execute(
        _CLAIM,
        {
            "room": room,
            "per_subscription": per_subscription,
            "lease": lease,
            "test_type": TEST_EVENT_TYPE,
        },
    )
    return [
        Claimed(
            id=r.id,
            subscription_id=r.subscription_id,
            event_id=r.event_id,
            event_type=r.event_type,
            body=r.body,
            attempt=r.attempts,
            give_up_at=r.give_up_at,
            url=r.url,
            secret=r.secret,
            secret_key_id=r.secret_key_id,
            previous_secret=r.previous_secret,
            previous_secret_expires_at=r.previous_secret_expires_at,
            claimed_at=r.claimed_at,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to; ``next_attempt_at`` None: no more attempts."""

    delivered: bool
    status_code: int | None
    latency_ms: int
    error: str | None
    attempted_at: datetime
    next_attempt_at: datetime | None

    @property
    def name(self) -> str:
        if self.delivered:
            return "delivered"
        return "retry" if self.next_attempt_at is not None else "failed"


_FINISH = text(
    """
    UPDATE webhook_deliveries
    SET status = CASE WHEN :outcome = 'delivered' THEN 'delivered'
                      WHEN :outcome = 'failed' THEN 'failed' ELSE 'pending' END,
        leased_until = NULL,
        next_attempt_at = COALESCE(CAST(:next_at AS timestamptz), next_attempt_at),
        delivered_at = CASE WHEN :outcome = 'delivered' THEN now() ELSE delivered_at END,
        finished_at = CASE WHEN :outcome = 'retry' THEN NULL ELSE now() END,
        last_status_code = :status_code,
        last_error = :error
    WHERE id = :id AND status = 'pending'
    RETURNING subscription_id
    """
)

_LOG_ATTEMPT = text(
    """
    INSERT INTO webhook_attempts
        (delivery_id, attempt, attempted_at, status_code, latency_ms, error, outcome,
         next_attempt_at)
    VALUES (:id, :attempt, :attempted_at, :status_code, :latency_ms, :error, :outcome,
            :next_at)
    """
)

# a delivered one resets the count; a failed one adds to it and, at the threshold, pauses
# an active subscription with the reason
_COUNT_FAILURE = text(
    """
    UPDATE webhook_subscriptions
    SET failed_deliveries_in_row = failed_deliveries_in_row + 1,
        status = CASE WHEN status = 'active' AND failed_deliveries_in_row + 1 >= :threshold
                      THEN 'paused' ELSE status END,
        paused_reason = CASE WHEN status = 'active' AND failed_deliveries_in_row + 1 >= :threshold
                             THEN :reason ELSE paused_reason END,
        paused_at = CASE WHEN status = 'active' AND failed_deliveries_in_row + 1 >= :threshold
                         THEN now() ELSE paused_at END,
        updated_at = now()
    WHERE id = :id
    RETURNING status = 'paused' AND paused_at = now() AS paused_now
    """
)


async def finish(
    session: AsyncSession, claimed: Claimed, outcome: Outcome, *, pause_threshold: int
) -> bool:
    """Write the attempt and its consequence; True if this paused the subscription. A
    delivery no longer pending (dropped by an erasure, finished by another worker whose
    claim followed ours) is left as it is."""
    params: dict[str, Any] = {
        "id": claimed.id,
        "attempt": claimed.attempt,
        "attempted_at": outcome.attempted_at,
        "status_code": outcome.status_code,
        "latency_ms": outcome.latency_ms,
        "error": outcome.error,
        "outcome": outcome.name,
        "next_at": outcome.next_attempt_at,
    }
    if (await session.execute(_FINISH, params)).first() is None:
        return False
    await session.execute(_LOG_ATTEMPT, params)
    if outcome.delivered:
        await session.execute(
            text(
                "UPDATE webhook_subscriptions SET failed_deliveries_in_row = 0 "
                "WHERE id = :id AND failed_deliveries_in_row <> 0"
            ),
            {"id": claimed.subscription_id},
        )
        return False
    if outcome.next_attempt_at is not None:
        return False
    reason = (
        f"{pause_threshold} deliveries in a row failed after retrying; the last: "
        f"{(outcome.error or '')[:300]}"
    )
    row = (
        await session.execute(
            _COUNT_FAILURE,
            {"id": claimed.subscription_id, "threshold": pause_threshold, "reason": reason},
        )
    ).first()
    return bool(row and row.paused_now)
