from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from points.identifiers import ClientId

Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=128)
    category: str | None = Field(default=None, max_length=128)
    unit_price: Annotated[Money, Field(ge=0)]
    quantity: int = Field(ge=1, le=100_000)


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: ClientId = Field(description="The shop's order id: the idempotency key")
    member_id: ClientId
    amount: Annotated[Money, Field(gt=0, description="Amount the customer paid, after discounts")]
    currency: str | None = Field(default=None, max_length=3, pattern=r"^[A-Z]{3}$")
    items: list[OrderItem] = Field(default_factory=list, max_length=500)
    coupon_used: str | None = Field(default=None, max_length=128)
    discount_amount: Annotated[Money, Field(ge=0)] = Decimal("0")
    channel: str | None = Field(default=None, max_length=64)
    occurred_at: AwareDatetime = Field(
        description="When the order completed. POST /v1/orders: within the real-time window "
        "(48 h by default), not before the member's enrolment, not ahead of the service's "
        "clock; the history import takes any past time (docs/security.md)"
    )


class BalanceSummary(BaseModel):
    available: int
    pending: int


class OrderOut(BaseModel):
    order_id: str
    member_id: str
    points_earned: int = Field(description="All the points this order earned")
    points_pending: int = Field(description="The part still inside the return window")
    campaigns_applied: list[str]
    balance: BalanceSummary
    tier: str
    tier_changed: bool
