from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field


class ProfileOut(BaseModel):
    member_id: str
    enrolled_at: datetime | None
    tier: str | None
    order_count: int
    total_spend: Decimal = Field(description="Sum of order amounts (decimal string)")
    average_order_value: Decimal | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    points_earned: int
    updated_at: datetime
