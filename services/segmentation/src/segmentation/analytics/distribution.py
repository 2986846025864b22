"""How the profiles spread: over value tiers, lifecycle stages, loyalty tiers and the RFM
recency x frequency grid, counted over every profile in one statement (GROUPING SETS).

The ops console draws its value tier, lifecycle and RFM charts from this: counted here,
over the whole population, rather than by paging through profiles.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_COUNTS = text(
    "SELECT grouping(value_tier) AS gv, grouping(lifecycle) AS gl, grouping(tier) AS gt, "
    "grouping(rfm_r, rfm_f) AS grf, value_tier, lifecycle, tier, rfm_r, rfm_f, "
    "count(*) AS n FROM profiles "
    "GROUP BY GROUPING SETS ((), (value_tier), (lifecycle), (tier), (rfm_r, rfm_f))"
)


async def distribution(session: AsyncSession) -> dict[str, Any]:
    """Counts per value tier (``unscored`` before a recompute), lifecycle stage
    (``unknown``), loyalty tier (``none``) and RFM cell (scored profiles only)."""
    out: dict[str, Any] = {"profiles": 0, "value_tiers": {}, "lifecycle": {}, "tiers": {}}
    grid: list[dict[str, int]] = []
    for row in await session.execute(_COUNTS):
        if row.gv == 0:
            out["value_tiers"][row.value_tier or "unscored"] = row.n
        elif row.gl == 0:
            out["lifecycle"][row.lifecycle or "unknown"] = row.n
        elif row.gt == 0:
            out["tiers"][row.tier or "none"] = row.n
        elif row.grf == 0:
            if row.rfm_r is not None and row.rfm_f is not None:
                grid.append({"r": row.rfm_r, "f": row.rfm_f, "count": row.n})
        else:
            out["profiles"] = row.n
    out["rfm_grid"] = sorted(grid, key=lambda c: (c["r"], c["f"]))
    out["rfm_scored"] = sum(c["count"] for c in grid)
    return out
