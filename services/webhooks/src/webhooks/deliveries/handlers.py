"""The webhooks consumer group: every subscribable event becomes a delivery per subscription.

It reads every platform topic in its own consumer group (``webhooks``), so a slow endpoint
never holds up the platform's own consumers: this consumer only writes rows (one statement
per batch, in the batch's transaction with the inbox, so an event makes its deliveries once:
unique by subscription and event id), and the sender POSTs them apart.

The body is the CloudEvents envelope with ``data`` read with the event type's contract model
and written back by it: the same typed payload as on Kafka, no field more. After a member's
erasure event, every delivery about the member is dropped (pending or done: their bodies
hold the member's data), and the shared consumer skips every later event about them; the
erasure event itself is delivered to the subscriptions that asked for it, so a shop can
erase the member in its own systems.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_shared.contracts import CONTRACTS, WEBHOOK_EVENT_TYPES
from loyalty_shared.erasure import MEMBER_ERASED
from loyalty_shared.events import CloudEvent
from loyalty_shared.inbox import EventConsumer
from loyalty_shared.topics import ALL_EVENT_TOPICS
from webhooks.deliveries.repository import fan_out, forget_member
from webhooks.settings import WebhooksSettings

# what a subscription may ask for (the AsyncAPI document's x-webhooks lists the same)
SUBSCRIBABLE: frozenset[str] = frozenset(WEBHOOK_EVENT_TYPES)


def typed(event: CloudEvent) -> CloudEvent:
    """The event with ``data`` as its contract model reads and writes it (``InvalidPayload``
    for a payload the model can't read: the consumer dead-letters it)."""
    payload = CONTRACTS[event.type].of(event)
    return event.model_copy(update={"data": payload.model_dump(mode="json")})


_BATCH = "webhooks.batch"


class WebhookConsumer(EventConsumer):
    """A batch's events become deliveries in one statement at its end (and before an
    erasure). The batch lives in the transaction's ``session.info``: with
    ``consumer_concurrency`` > 1 each lane writes its own events in its own transaction."""

    lane_safe = True

    def __init__(
        self,
        settings: WebhooksSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        wake: asyncio.Event | None = None,
        group_id: str | None = None,
    ) -> None:
        super().__init__(
            settings, sessionmaker, topics=ALL_EVENT_TOPICS, handlers={}, group_id=group_id
        )
        self.window = settings.retry_window_seconds
        self.wake = wake

    def wants(self, event_type: str) -> bool:
        return event_type in SUBSCRIBABLE or event_type == MEMBER_ERASED

    async def apply_fresh(self, session: AsyncSession, events: list[CloudEvent]) -> int:
        session.info[_BATCH] = []
        skipped = await super().apply_fresh(session, events)
        await self._flush(session)
        return skipped

    async def handle(self, session: AsyncSession, event: CloudEvent) -> None:
        if event.type == MEMBER_ERASED and event.subject:
            await self._flush(session)  # this batch's earlier events about them go too
            await forget_member(session, event.subject)
        session.info[_BATCH].append(typed(event))

    async def _flush(self, session: AsyncSession) -> None:
        batch: list[CloudEvent] = session.info[_BATCH]
        session.info[_BATCH] = []
        await fan_out(session, batch, self.window)

    async def _apply(self, events: list[CloudEvent]) -> None:
        await super()._apply(events)
        if self.wake is not None:
            self.wake.set()  # committed: the sender may take them now
