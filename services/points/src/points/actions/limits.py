"""What one interaction, and one member's interactions, may put into the ledger's tables and
the event stream (docs/security.md, "Sizes" and "Per-member caps").

- ``attributes`` of ``POST /v1/interactions``: at most ``interaction_attributes_max_bytes``
  serialized (default 16 KB), nested at most ``schemas.MAX_DEPTH`` deep; more is a 422 naming
  ``body.attributes``. Every interaction becomes an event carrying its attributes, and a
  row the broker refuses for its size would hold the outbox up.
- ``interactions_daily_limit`` per member and local day (default 200): past it an
  interaction is answered 202 with ``recorded: false`` and reason
  ``capped_interactions_daily``: nothing stored, nothing published, nothing earned.
"""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import Unprocessable
from points.actions.credit import ActionMember
from points.actions.models import interactions
from points.actions.schemas import InteractionIn
from points.actions.service import periods
from points.settings import PointsSettings

CAPPED_DAILY = "capped_interactions_daily"


class AttributesTooLarge(Unprocessable):
    slug = "attributes-too-large"
    title = "Interaction attributes too large"


def check_attributes(data: InteractionIn, settings: PointsSettings) -> None:
    limit = settings.interaction_attributes_max_bytes
    size = len(orjson.dumps(data.attributes))
    if size > limit:
        message = f"is {size} bytes as JSON; at most {limit} are accepted"
        raise AttributesTooLarge(
            f"attributes {message}",
            errors=[{"field": "body.attributes", "message": message, "type": "too_large"}],
        )


async def recorded_on_day(session: AsyncSession, member: ActionMember, at: datetime) -> int:
    """How many interactions the member recorded on the local day of ``at``."""
    p = periods(at, member.timezone)
    counted = await session.execute(
        select(func.count()).where(
            interactions.c.member_id == member.locked.member_id,
            interactions.c.occurred_at >= p.day_start,
            interactions.c.occurred_at < p.day_end,
        )
    )
    return int(counted.scalar_one())


async def day_is_full(
    session: AsyncSession, settings: PointsSettings, member: ActionMember, at: datetime
) -> bool:
    """Whether the member's local day of ``at`` already has the limit's interactions (the
    caller holds the member's balance lock, so two requests cannot both take the last one)."""
    limit = settings.interactions_daily_limit
    return limit > 0 and await recorded_on_day(session, member, at) >= limit
