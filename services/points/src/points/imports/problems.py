"""A failed row's problem (RFC 9457) with every field named from the request root, row index
included (``body.orders.3.amount``, ``body.orders.7.member_id``, ``body.orders.2.order_id``):
the same dotted form as every other validation error of the API."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from loyalty_shared.problems import ProblemError, problem_type


def row_field(
    index: int, path: str | list[Any] | tuple[Any, ...] = (), *, rows: str = "orders"
) -> str:
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
    return ".".join(["body", rows, str(index), *(str(p) for p in parts)])


def validation_problem(index: int, exc: ValidationError, *, rows: str = "orders") -> dict[str, Any]:
    errors = [
        {
            "field": row_field(index, err["loc"], rows=rows),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors()
    ]
    return {
        "type": problem_type("validation-error"),
        "title": "Invalid order" if rows == "orders" else "Invalid refund",
        "status": 422,
        "detail": f"{len(errors)} invalid field(s): " + ", ".join(e["field"] for e in errors),
        "errors": errors,
    }


def row_problem(
    index: int, exc: ProblemError, *, field: str | None = None, rows: str = "orders"
) -> dict[str, Any]:
    """The row's problem with every field named from the request root (index included);
    ``field``: the one to name when the problem names none."""
    problem = exc.to_dict()
    errors = problem.get("errors")
    if isinstance(errors, list) and errors:
        problem["errors"] = [
            {**e, "field": row_field(index, str(e.get("field") or ""), rows=rows)}
            if isinstance(e, dict)
            else e
            for e in errors
        ]
    elif field is not None:
        problem["errors"] = [{"field": row_field(index, field, rows=rows), "message": exc.detail}]
    return problem


def unknown_member_problem(index: int, exc: ProblemError) -> dict[str, Any]:
    problem = row_problem(index, exc)
    problem["errors"] = [
        {"field": row_field(index, "member_id"), "message": "member is not enrolled"}
    ]
    return problem
