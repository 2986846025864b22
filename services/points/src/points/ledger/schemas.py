"""Balance and ledger shapes shared by the endpoints that move points."""

from datetime import datetime

from pydantic import BaseModel, Field


class BalanceAfter(BaseModel):
    available: int = Field(description="Spendable points; negative only while the member owes")
    pending: int = Field(description="Points still inside the return window")
    debt: int = Field(description="Points owed after refunds of points already spent")


class LedgerEntryOut(BaseModel):
    entry_id: int
    type: str
    points: int = Field(description="Change of the available balance")
    pending_change: int
    debt_change: int
    lot_id: int | None
    reason: str | None
    source_type: str
    source_id: str
    operator: str | None
    occurred_at: datetime
    created_at: datetime


class LedgerPage(BaseModel):
    items: list[LedgerEntryOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page")
