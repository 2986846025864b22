"""Refunds as rows of the history import: each through the refund flow, in a savepoint.

Refunds are few next to orders, so each goes through ``points.refunds.service`` as
``POST /v1/orders/{order_id}/refunds`` would record it (points reversed pro rata, debt if
they were spent, idempotent by ``refund_id``), with any past ``occurred_at`` (not before
its order, not ahead of the clock). A batch's refunds come after its orders, in
``occurred_at`` order; a bad row fails alone (``body.refunds.N.<field>``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import ProblemError
from points.errors import IdempotencyConflict, OrderNotFound
from points.imports.problems import row_problem, validation_problem
from points.imports.schemas import RefundRowIn
from points.refunds import service as refunds
from points.refunds.schemas import RefundIn
from points.settings import PointsSettings

ROWS = "refunds"


def parse_refunds(rows: list[Any], failed: list[dict[str, Any]]) -> list[tuple[int, RefundRowIn]]:
    """Validate every refund row alone (invalid ones go to ``failed``), in time order."""
    parsed: list[tuple[int, RefundRowIn]] = []
    for index, row in enumerate(rows):
        try:
            parsed.append((index, RefundRowIn.model_validate(row)))
        except ValidationError as exc:
            failed.append({"index": index, "problem": validation_problem(index, exc, rows=ROWS)})
    return sorted(parsed, key=lambda r: (r[1].occurred_at, r[0]))


async def record_refunds(
    session: AsyncSession,
    settings: PointsSettings,
    rows: list[tuple[int, RefundRowIn]],
    now: datetime,
    failed: list[dict[str, Any]],
) -> int:
    """Record the refund rows; how many are recorded (now or before: a rerun)."""
    recorded = 0
    for index, row in rows:
        data = RefundIn(
            refund_id=row.refund_id,
            amount=row.amount,
            occurred_at=row.occurred_at,
            reason=row.reason,
        )
        try:
            async with session.begin_nested():
                await refunds.refund_order(
                    session, settings, row.order_id, data, now=now, history=True
                )
        except OrderNotFound as exc:
            problem = row_problem(index, exc, field="order_id", rows=ROWS)
            failed.append({"index": index, "problem": problem})
            continue
        except IdempotencyConflict as exc:
            problem = row_problem(index, exc, field="refund_id", rows=ROWS)
            failed.append({"index": index, "problem": problem})
            continue
        except ProblemError as exc:
            failed.append({"index": index, "problem": row_problem(index, exc, rows=ROWS)})
            continue
        recorded += 1
    return recorded
