"""Consumers that fold other services' events into profiles (idempotency is the inbox's job)."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.events import CloudEvent
from segmentation.profiles.models import Profile


async def on_member_enrolled(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    stmt = insert(Profile).values(
        member_id=data["member_id"],
        enrolled_at=datetime.fromisoformat(data["enrolled_at"]),
        tier=data.get("tier"),
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Profile.member_id],
            set_={"enrolled_at": stmt.excluded.enrolled_at, "updated_at": func.now()},
        )
    )


async def on_order_recorded(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    occurred = datetime.fromisoformat(data["occurred_at"])
    amount = Decimal(data["amount"])
    stmt = insert(Profile).values(
        member_id=data["member_id"],
        order_count=1,
        total_spend=amount,
        first_order_at=occurred,
        last_order_at=occurred,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Profile.member_id],
            set_={
                "order_count": Profile.order_count + 1,
                "total_spend": Profile.total_spend + amount,
                "first_order_at": func.least(Profile.first_order_at, occurred),
                "last_order_at": func.greatest(Profile.last_order_at, occurred),
                "updated_at": func.now(),
            },
        )
    )


async def on_points_earned(session: AsyncSession, event: CloudEvent) -> None:
    data = event.data
    points = int(data["points"])
    stmt = insert(Profile).values(member_id=data["member_id"], points_earned=points)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Profile.member_id],
            set_={"points_earned": Profile.points_earned + points, "updated_at": func.now()},
        )
    )


HANDLERS = {
    "loyalty.member.enrolled.v1": on_member_enrolled,
    "loyalty.order.recorded.v1": on_order_recorded,
    "loyalty.points.earned.v1": on_points_earned,
}
