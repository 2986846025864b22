"""Manual adjustments by ops: a reason and an operator on every row.

A positive adjustment is a new lot (expiring like any credit) that repays a debt
first; a negative one spends available lots FIFO and is refused (409
``insufficient-points``) beyond what is spendable: ops cannot create a debt by hand.

A positive adjustment adds to growth value when the ladder counts ``adjustment`` points,
and upgrades the member at once if that qualifies (``points.tiers.upgrades``); a negative
one is a debit like a redemption: it takes points, not growth value.
"""

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from points import events
from points.adjustments.schemas import AdjustmentIn, AdjustmentOut
from points.ledger import models as lm
from points.ledger import service as ledger
from points.ledger.schemas import BalanceAfter
from points.privacy.service import lock_live_member
from points.settings import PointsSettings
from points.tiers.service import counts_toward_growth, load_ladder
from points.tiers.upgrades import upgrade_at_once


async def adjust(
    session: AsyncSession,
    settings: PointsSettings,
    member_id: str,
    data: AdjustmentIn,
    operator: str,
    *,
    now: datetime | None = None,
) -> AdjustmentOut:
    now = now or datetime.now(UTC)
    locked = await lock_live_member(session, member_id)  # an erased member: 404
    adjustment_id = f"adj-{uuid.uuid4().hex}"
    key = f"adjustment:{adjustment_id}"
    posting = ledger.Posting(
        session, locked, "adjustment", adjustment_id, now, reason=data.reason, operator=operator
    )
    ladder = await load_ladder(session)
    growth = 0
    if data.points > 0:
        growth = data.points if counts_toward_growth(ladder, "adjustment") else 0
        await posting.credit(
            data.points,
            key=key,
            entry_type=lm.ADJUST,
            earned_at=now,
            available_at=now,
            expires_at=ledger.expiry_for(now, settings.expiry_months),
            lifetime=False,
            growth=growth,
        )
        await posting.settle_debt(key=key)
    else:
        await posting.spend(-data.points, entry_type=lm.ADJUST, key=key, now=now)
    balance = await posting.finish()
    await upgrade_at_once(
        session, ladder, member_id, growth_added=growth, at=now, reason="adjustment"
    )
    out = AdjustmentOut(
        adjustment_id=adjustment_id,
        member_id=member_id,
        points=data.points,
        reason=data.reason,
        operator=operator,
        balance=BalanceAfter(
            available=balance.available, pending=balance.pending, debt=balance.debt
        ),
        created_at=now,
    )
    await events.publish(
        session,
        events.points_event(
            events.POINTS_ADJUSTED,
            member_id,
            {
                "member_id": member_id,
                "adjustment_id": adjustment_id,
                "points": data.points,
                "reason": data.reason,
                "operator": operator,
                "occurred_at": now.isoformat(),
                "balance_available": balance.available,
            },
            time=now,
        ),
    )
    return out
