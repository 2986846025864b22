"""History import: many orders in one request (``POST /v1/orders/batch``) or from a CSV file
(``python -m points import-orders``).

Each order goes through the same ``record_order`` as a live one, inside its own savepoint,
so a bad row fails alone (its problem is reported with its index) and the rest commit.
Orders are recorded in ``occurred_at`` order so tiers progress as they did; each is
evaluated as of its own ``occurred_at`` (pending window, lot expiry, campaigns running
then, growth window). Re-running an import credits nothing twice: a known order id with
the same body is counted as a duplicate, with another body it fails (409 problem).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.problems import ProblemError, problem_type
from points.errors import UnknownMember
from points.members import service as members
from points.members.schemas import MemberIn
from points.orders.schemas import OrderIn
from points.orders.service import record_order_once
from points.rules_cache import RulesCache
from points.settings import PointsSettings


@dataclass
class BatchResult:
    created: int = 0
    duplicates: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)


def _validation_problem(exc: ValidationError) -> dict[str, Any]:
    errors = [
        {
            "field": ".".join(["body", *(str(p) for p in err["loc"])]),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors()
    ]
    return {
        "type": problem_type("validation-error"),
        "title": "Invalid order",
        "status": 422,
        "detail": f"{len(errors)} invalid field(s): " + ", ".join(e["field"] for e in errors),
        "errors": errors,
    }


def parse_rows(rows: list[Any], result: BatchResult) -> list[tuple[int, OrderIn]]:
    """Validate every row alone; invalid ones go to ``result.failed``."""
    parsed: list[tuple[int, OrderIn]] = []
    for index, row in enumerate(rows):
        try:
            parsed.append((index, OrderIn.model_validate(row)))
        except ValidationError as exc:
            result.failed.append({"index": index, "problem": _validation_problem(exc)})
    return parsed


async def import_orders(
    session: AsyncSession,
    settings: PointsSettings,
    rows: list[Any],
    *,
    enrol_missing: bool,
    cache: RulesCache | None = None,
    now: datetime | None = None,
    result: BatchResult | None = None,
) -> BatchResult:
    result = result or BatchResult()
    now = now or datetime.now(UTC)
    parsed = parse_rows(rows, result)
    parsed.sort(key=lambda item: (item[1].occurred_at, item[0]))
    for index, data in parsed:
        try:
            async with session.begin_nested():
                if enrol_missing:
                    await members.enrol(session, settings, MemberIn(member_id=data.member_id))
                _, created = await record_order_once(session, settings, data, now=now, cache=cache)
        except UnknownMember as exc:
            problem = exc.to_dict()
            problem["errors"] = [{"field": "member_id", "message": "member is not enrolled"}]
            result.failed.append({"index": index, "problem": problem})
            continue
        except ProblemError as exc:
            result.failed.append({"index": index, "problem": exc.to_dict()})
            continue
        if created:
            result.created += 1
        else:
            result.duplicates += 1
    result.failed.sort(key=lambda f: f["index"])
    return result
