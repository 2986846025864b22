from datetime import datetime

from pydantic import BaseModel, Field


class Drift(BaseModel):
    member_id: str
    field: str = Field(
        description="available, pending, debt, lifetime_earned, growth_value, "
        "growth_cache_sum, pending_lots, spendable_lots (the balance row against the lots), "
        "lot_remaining (one lot against its entries)"
    )
    expected: int | None = Field(description="recomputed from the entries and lots")
    actual: int | None = Field(description="what the balance row (or the lot) holds")
    lot_id: int | None = Field(default=None, description="lot_remaining: the lot")


class LedgerReport(BaseModel):
    checked_at: datetime
    members: int = Field(description="balance rows checked")
    lots: int = Field(description="lots checked")
    drift_count: int = Field(description="every difference found (0: the ledger balances)")
    drift: list[Drift] = Field(description="the differences, at most `limit` of them")

    @property
    def balanced(self) -> bool:
        return self.drift_count == 0
