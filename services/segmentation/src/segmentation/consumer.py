"""The segmentation consumer: the shared idempotent consumer, with a batched path.

Per polled batch (one transaction, as in ``loyalty_shared.inbox``): the event ids
go into the inbox first; fresh events whose type has a batch handler
(``profiles.handlers.BATCH_HANDLERS``: orders, points earned) are applied once,
set-based, after the per-event handlers. Their effects commute with every other
handler's (sums, least/greatest, newest-wins), so the final profile is the same
as one event at a time, in a few statements instead of several per event.
A failing batch falls back to the base class's one-event-at-a-time retries,
which come through here with a single event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import EventConsumer, Handler
from loyalty_shared.settings import CommonSettings
from segmentation.profiles.handlers import BatchHandler

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
        async with self.sessionmaker() as session, session.begin():
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
                    self.stats.duplicates += 1
                    continue
                fresh.discard(event.id)  # the same id twice in one batch runs once
                if event.type in self.batch_handlers:
                    batched.setdefault(event.type, []).append(event)
                    continue
                structlog.contextvars.bind_contextvars(event_id=event.id, event_type=event.type)
                try:
                    await self.handlers[event.type](session, event)
                finally:
                    structlog.contextvars.unbind_contextvars("event_id", "event_type")
            for type_, group in batched.items():
                await self.batch_handlers[type_](session, group)
            self.stats.processed += len(relevant)
