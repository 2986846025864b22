"""Ops-editable analytics configuration kept in ``config_entries`` (defaults when unset)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared import ahp
from segmentation.analytics.models import ConfigEntry

LOYALTY_INDICATORS = (
    "repeat_purchases",
    "purchase_share",
    "brand_attention",
    "choice_time",
    "price_insensitivity",
    "competitor_resistance",
    "quality_tolerance",
)

# Relative importance (DOMAIN.md, section Segmentation 7): repeat purchases and
# purchase share weigh most. The default matrix is a_ij = v_i / v_j, which is
# perfectly consistent (CR = 0); ops replace it with their own judgments.
_DEFAULT_PRIORITIES = (5.0, 4.0, 2.0, 1.0, 3.0, 3.0, 2.0)
DEFAULT_LOYALTY_MATRIX = [[vi / vj for vj in _DEFAULT_PRIORITIES] for vi in _DEFAULT_PRIORITIES]

LOYALTY_KEY = "loyalty_ahp_matrix"
CONTACT_POLICY_KEY = "contact_policy"


async def get_entry(session: AsyncSession, key: str) -> dict[str, Any] | None:
    entry = await session.get(ConfigEntry, key)
    return entry.value if entry is not None else None


async def put_entry(session: AsyncSession, key: str, value: dict[str, Any]) -> None:
    stmt = insert(ConfigEntry).values(key=key, value=value)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[ConfigEntry.key], set_={"value": value, "updated_at": func.now()}
        )
    )


async def loyalty_matrix(session: AsyncSession) -> list[list[float]]:
    stored = await get_entry(session, LOYALTY_KEY)
    return stored["matrix"] if stored else DEFAULT_LOYALTY_MATRIX


async def loyalty_weights(session: AsyncSession) -> tuple[list[list[float]], ahp.AHPResult]:
    matrix = await loyalty_matrix(session)
    return matrix, ahp.weights(matrix)
