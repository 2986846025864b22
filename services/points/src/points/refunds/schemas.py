from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from points.identifiers import ClientId
from points.ledger.schemas import BalanceAfter

Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_id: ClientId = Field(description="The shop's refund id: the idempotency key")
    amount: Annotated[Money, Field(gt=0, description="Amount refunded to the customer")]
    occurred_at: AwareDatetime | None = Field(
        default=None,
        description="Defaults to now; not before the order, not older than the real-time "
        "window, not ahead of the service's clock (docs/security.md)",
    )
    reason: str | None = Field(default=None, max_length=500)


class RefundOut(BaseModel):
    refund_id: str
    order_id: str
    member_id: str
    amount: Decimal
    refunded_total: Decimal = Field(
        description="All refunds of this order so far, this one included"
    )
    points_reversed: int
    reversed_from_pending: int
    reversed_from_available: int
    debt_added: int = Field(description="Points already spent that the member now owes")
    already_expired: int = Field(
        description="Points of the order that had expired before the refund: not taken twice"
    )
    balance: BalanceAfter
    occurred_at: datetime
