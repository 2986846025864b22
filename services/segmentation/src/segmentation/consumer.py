"""The segmentation consumer: the shared idempotent consumer, with a batched path.

Per polled batch (one transaction, as in ``loyalty_shared.inbox``, which also claims the
inbox rows and skips erased members; this class overrides its ``apply_fresh`` and
``handle`` hooks, nothing else of it): fresh events whose type has a batch handler
(``profiles.handlers.BATCH_HANDLERS``: orders, points earned) are applied once,
set-based, after the per-event handlers. Their effects commute with every other
handler's (sums, least/greatest, newest-wins), so the final profile is the same
as one event at a time, in a few statements instead of several per event.
A failing batch falls back to the base class's one-event-at-a-time retries,
which come through here with a single event.

Rule tags and segment memberships are evaluated once per batch, at its end, for
every member the batch touched (``segments.live.defer_refresh`` /
``flush_refresh``): two set-based statements instead of a few per event. Events
whose effect does not commute with the others (``BARRIERS``: an erasure) first
apply what is pending, so nothing of an erased member is written after the erasure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import EventConsumer, Handler
from loyalty_shared.settings import CommonSettings
from segmentation.profiles.handlers import BARRIERS, BatchHandler
from segmentation.segments.live import defer_refresh, flush_refresh

_BATCHED = "segmentation.batched_events"


class BatchingEventConsumer(EventConsumer):
    # the batched events and the pending refresh live in the transaction's session.info
    lane_safe = True

    def __init__(
        self,
        settings: CommonSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        batch_handlers: Mapping[str, BatchHandler],
        group_id: str | None = None,
    ) -> None:
        super().__init__(
            settings, sessionmaker, topics=topics, handlers=handlers, group_id=group_id
        )
        self.batch_handlers = dict(batch_handlers)

    def wants(self, event_type: str) -> bool:
        return super().wants(event_type) or event_type in self.batch_handlers

    async def apply_fresh(self, session: AsyncSession, events: list[CloudEvent]) -> int:
        # the batched events live in the transaction's session (several run at once with
        # consumer_concurrency > 1), like the pending refresh
        session.info[_BATCHED] = {}
        defer_refresh(session)
        skipped = await super().apply_fresh(session, events)
        await self._flush(session)
        return skipped

    async def handle(self, session: AsyncSession, event: CloudEvent) -> None:
        if event.type in self.batch_handlers:
            session.info[_BATCHED].setdefault(event.type, []).append(event)
            return
        if event.type in BARRIERS:
            await self._flush(session)
        await super().handle(session, event)

    async def _flush(self, session: AsyncSession) -> None:
        """Apply the batched events so far, then the pending tag/segment refresh."""
        batched: dict[str, list[CloudEvent]] = session.info[_BATCHED]
        for type_, group in batched.items():
            await self.batch_handlers[type_](session, group)
        batched.clear()
        await flush_refresh(session)
