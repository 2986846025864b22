"""History import: many orders in one request (``POST /v1/orders/batch``) or from a CSV file
(``python -m points import-orders``).

Each order goes through the same ``record_order`` as a live one, inside its own savepoint,
so a bad row fails alone (its problem is reported with its index) and the rest commit.
Orders are recorded in ``occurred_at`` order so tiers progress as they did; each is
evaluated as of its own ``occurred_at`` (pending window, lot expiry, campaigns running
then, growth window). Re-running an import credits nothing twice: a known order id with
the same body is counted as a duplicate, with another body it fails (409 problem).

A failed row's problem names its fields from the request root, row index included
(``body.orders.3.amount``, ``body.orders.7.member_id``, ``body.orders.2.order_id``), the
same dotted form as every other validation error of the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_shared.deadlocks import retry_on_deadlock
from loyalty_shared.problems import ProblemError, problem_type
from points.checkout.record import record_order_once
from points.client_times import TimeBounds
from points.errors import IdempotencyConflict, UnknownMember
from points.members import service as members
from points.members.schemas import MemberIn
from points.orders.schemas import OrderIn
from points.rules_cache import RulesCache
from points.settings import PointsSettings


@dataclass
class BatchResult:
    created: int = 0
    duplicates: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)


def row_field(index: int, path: str | list[Any] | tuple[Any, ...] = ()) -> str:
    """A field of row ``index`` as the whole request names it: ``body.orders.3.amount``.

    The same dotted form FastAPI gives every other field (``body.rules.0.points``), so a
    client can point at the cell whether the batch or the row was invalid. ``path`` is the
    field inside the row (a pydantic ``loc`` or a ``body.``-prefixed path from a problem).
    """
    if isinstance(path, str):
        if path == "body" or path.startswith("body."):
            path = path[len("body") :]
        parts: list[Any] = [p for p in path.split(".") if p]
    else:
        parts = list(path)
    return ".".join(["body", "orders", str(index), *(str(p) for p in parts)])


def _validation_problem(index: int, exc: ValidationError) -> dict[str, Any]:
    errors = [
        {"field": row_field(index, err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
    return {
        "type": problem_type("validation-error"),
        "title": "Invalid order",
        "status": 422,
        "detail": f"{len(errors)} invalid field(s): " + ", ".join(e["field"] for e in errors),
        "errors": errors,
    }


def _row_problem(index: int, exc: ProblemError, *, field: str | None = None) -> dict[str, Any]:
    """The row's problem with every field named from the request root (index included)."""
    problem = exc.to_dict()
    errors = problem.get("errors")
    if isinstance(errors, list) and errors:
        problem["errors"] = [
            {**e, "field": row_field(index, str(e.get("field") or ""))}
            if isinstance(e, dict)
            else e
            for e in errors
        ]
    elif field is not None:
        problem["errors"] = [{"field": row_field(index, field), "message": exc.detail}]
    return problem


def parse_rows(rows: list[Any], result: BatchResult) -> list[tuple[int, OrderIn]]:
    """Validate every row alone; invalid ones go to ``result.failed``."""
    parsed: list[tuple[int, OrderIn]] = []
    for index, row in enumerate(rows):
        try:
            parsed.append((index, OrderIn.model_validate(row)))
        except ValidationError as exc:
            result.failed.append({"index": index, "problem": _validation_problem(index, exc)})
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

    async def record_all() -> BatchResult:
        await session.execute(_LOCK_BALANCES, {"ids": sorted({d.member_id for _, d in parsed})})
        return await _record(session, settings, parsed, enrol_missing, cache, now)

    # a lost deadlock all the same (a consumer batch crediting the same members in another
    # order, an enrolment of the same new member): the whole import again, never a 500
    recorded = await retry_on_deadlock(session, record_all)
    result.created += recorded.created
    result.duplicates += recorded.duplicates
    result.failed = sorted(result.failed + recorded.failed, key=lambda f: f["index"])
    return result


# Every balance row the import may write (its members', and their referrers': a first
# order credits the referrer), locked in member id order before any is written: the
# orders are recorded in occurred_at order, which would lock them in any order, and a
# concurrent writer of several members (the tier ladder, another import) would meet
# them halfway. Members it enrols have no row yet: they are new to every writer.
_LOCK_BALANCES = text(
    "SELECT b.member_id FROM balances b "
    "WHERE b.member_id = ANY(CAST(:ids AS text[])) "
    "OR b.member_id IN (SELECT m.referred_by FROM members m "
    "WHERE m.member_id = ANY(CAST(:ids AS text[])) AND m.referred_by IS NOT NULL) "
    "ORDER BY b.member_id FOR UPDATE OF b"
)


async def _record(
    session: AsyncSession,
    settings: PointsSettings,
    parsed: list[tuple[int, OrderIn]],
    enrol_missing: bool,
    cache: RulesCache | None,
    now: datetime,
) -> BatchResult:
    """Record the valid rows, each in its own savepoint (a bad row fails alone)."""
    result = BatchResult()
    bounds = TimeBounds.of(settings)
    for index, data in parsed:
        try:
            bounds.check_not_ahead(data.occurred_at, now)
            async with session.begin_nested():
                if enrol_missing:
                    await members.enrol(
                        session, settings, MemberIn(member_id=data.member_id), cache=cache
                    )
                _, created = await record_order_once(session, settings, data, now=now, cache=cache)
        except UnknownMember as exc:
            problem = _row_problem(index, exc)
            problem["errors"] = [
                {"field": row_field(index, "member_id"), "message": "member is not enrolled"}
            ]
            result.failed.append({"index": index, "problem": problem})
            continue
        except IdempotencyConflict as exc:  # the order id is known with another body
            result.failed.append(
                {"index": index, "problem": _row_problem(index, exc, field="order_id")}
            )
            continue
        except ProblemError as exc:
            result.failed.append({"index": index, "problem": _row_problem(index, exc)})
            continue
        if created:
            result.created += 1
        else:
            result.duplicates += 1
    return result
