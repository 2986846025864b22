"""The segmentation consumer: the shared idempotent consumer, with a batched path.

Per polled batch (one transaction, as in ``loyalty_shared.inbox``): the event ids
go into the inbox first; fresh events whose type has a batch handler
(``profiles.handlers.BATCH_HANDLERS``: orders, points earned) are applied once,
set-based, after the per-event handlers. Their effects commute with every other
handler's (sums, least/greatest, newest-wins), so the final profile is the same
as one event at a time, in a few statements instead of several per event.
A failing batch falls back to the base class's one-event-at-a-time retries,
which come through here with a single event.

Rule tags and segment memberships are evaluated once per batch, at its end, for
every member the batch touched (``segments.service.defer_refresh`` /
``flush_refresh``): two set-based statements instead of a few per event. Events
whose effect does not commute with the others (``BARRIERS``: an erasure) first
apply what is pending, so nothing of an erased member is written after the erasure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import EventConsumer, Handler
from loyalty_shared.settings import CommonSettings
from segmentation.profiles.handlers import BARRIERS, BatchHandler
from segmentation.segments.service import defer_refresh, flush_refresh

_CLAIM = text(
    "INSERT INTO inbox (event_id, event_type, source) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[]), "
    "CAST(:sources AS text[])) ON CONFLICT DO NOTHING RETURNING event_id"
)


class BatchingEventConsumer(EventConsumer):
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

    async def _apply(self, events: list[CloudEvent]) -> None:
        relevant = [e for e in events if e.type in self.handlers or e.type in self.batch_handlers]
        if not relevant:
            return
        applied = duplicates = 0
        async with self.sessionmaker() as session, session.begin():
            defer_refresh(session)
            result = await session.execute(
                _CLAIM,
                {
                    "ids": [e.id for e in relevant],
                    "types": [e.type for e in relevant],
                    "sources": [e.source for e in relevant],
                },
            )
            fresh = {row[0] for row in result}
            batched: dict[str, list[CloudEvent]] = {}
            for event in relevant:
                if event.id not in fresh:
                    duplicates += 1
                    continue
                fresh.discard(event.id)  # the same id twice in one batch runs once
                applied += 1
                if event.type in self.batch_handlers:
                    batched.setdefault(event.type, []).append(event)
                    continue
                if event.type in BARRIERS:
                    await self._flush(session, batched)
                structlog.contextvars.bind_contextvars(
                    event_id=event.id,
                    event_type=event.type,
                    request_id=self._request_ids.get(event.id),
                )
                try:
                    await self.handlers[event.type](session, event)
                finally:
                    structlog.contextvars.unbind_contextvars("event_id", "event_type", "request_id")
            await self._flush(session, batched)
        # counted once the transaction committed (a rolled-back batch is retried)
        self.stats.processed += applied
        self.stats.duplicates += duplicates

    async def _flush(self, session: AsyncSession, batched: dict[str, list[CloudEvent]]) -> None:
        """Apply the batched events so far, then the pending tag/segment refresh."""
        for type_, group in batched.items():
            await self.batch_handlers[type_](session, group)
        batched.clear()
        await flush_refresh(session)
