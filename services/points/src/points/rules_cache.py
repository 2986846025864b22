"""In-process cache of the data every order reads: the tier ladder and the running campaigns.

Both change rarely (an ops PUT/POST), while every checkout needs them, so the order
flow keeps them for ``POINTS_RULES_CACHE_SECONDS`` (default 5 s) instead of reading them
on each request. A change made through this process clears its cache at once; other
processes (more API replicas, the worker) see it within that many seconds.
(docs/points-rules.md, "Caching on the order path").

Campaigns are cached as every active campaign that has not ended a day before the load
(``apply_campaigns`` checks each window against the order's own ``occurred_at``); an order
older than that (history imports) reads the campaigns of its time from the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from points.campaigns.calculator import Campaign
from points.campaigns.models import CampaignRow
from points.campaigns.service import active_campaigns, to_campaign
from points.tiers.schemas import TierLadder
from points.tiers.service import load_ladder

LOOKBACK = timedelta(days=1)


@dataclass
class _Entry:
    ladder: TierLadder
    campaigns: list[Campaign]
    loaded_at: datetime
    expires: float


class RulesCache:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entry: _Entry | None = None

    def invalidate(self) -> None:
        self._entry = None

    def _fresh(self) -> _Entry | None:
        entry = self._entry
        return entry if entry is not None and time.monotonic() < entry.expires else None

    async def _load(self, session: AsyncSession, now: datetime) -> _Entry:
        entry = self._fresh()
        if entry is not None:
            return entry
        ladder = await load_ladder(session)
        rows = (
            (
                await session.execute(
                    select(CampaignRow).where(
                        CampaignRow.active.is_(True), CampaignRow.ends_at > now - LOOKBACK
                    )
                )
            )
            .scalars()
            .all()
        )
        entry = _Entry(ladder, [to_campaign(r) for r in rows], now, time.monotonic() + self.ttl)
        if self.ttl > 0:
            self._entry = entry
        return entry

    async def get(
        self, session: AsyncSession, at: datetime, now: datetime
    ) -> tuple[TierLadder, list[Campaign]]:
        """The ladder and the campaigns that may apply to an order that occurred ``at``."""
        entry = await self._load(session, now)
        if at < entry.loaded_at - LOOKBACK:
            return entry.ladder, await active_campaigns(session, at)
        return entry.ladder, entry.campaigns

    def cached_ladder(self) -> TierLadder | None:
        """The ladder, if it can be had without the database (else None)."""
        entry = self._fresh()
        return None if entry is None else entry.ladder

    def cached(self, at: datetime) -> tuple[TierLadder, list[Campaign]] | None:
        """What ``get`` answers, if it can answer without the database (else None)."""
        entry = self._fresh()
        if entry is None or at < entry.loaded_at - LOOKBACK:
            return None
        return entry.ladder, entry.campaigns

    async def ladder(self, session: AsyncSession, now: datetime) -> TierLadder:
        return (await self._load(session, now)).ladder


async def earning_data(
    session: AsyncSession, cache: RulesCache | None, at: datetime, now: datetime
) -> tuple[TierLadder, list[Campaign]]:
    """Ladder and campaigns for an order: from the cache, or straight from the database."""
    if cache is not None:
        return await cache.get(session, at, now)
    return await load_ladder(session), await active_campaigns(session, at)
