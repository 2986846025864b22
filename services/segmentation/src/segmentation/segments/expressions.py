"""SQL expressions that both the live and the batch refresh evaluate over ``profiles``.

- ``reason_expr``: the history row's reason, each clause of a condition with its truth
  value, ``{"clauses": {"<clause as written>": true|false, ...}}``;
- ``rule_tags_expr``: the rule tags a profile has, as a text array.

Neither calls a function with one argument per clause: Postgres takes at most 100
arguments per function call (``FUNC_MAX_ARGS``), so ``jsonb_build_object`` gets at most
``PAIRS_PER_OBJECT`` clauses at a time and the pieces are joined with ``||`` (the same
object: later keys win, as within one call), and the tags are an ``ARRAY[...]``
constructor, which has no such limit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text, case, cast, func, literal
from sqlalchemy.dialects.postgresql import ARRAY, array

from segmentation.conditions.compile import comparison_sql, compiled
from segmentation.conditions.language import comparisons

PAIRS_PER_OBJECT = 50  # 100 arguments: Postgres's FUNC_MAX_ARGS


def reason_expr(condition: str, *, derived: bool = False) -> Any:
    """``{"clauses": {clause text: its truth value}}`` for the profile in the row
    (``derived``: over a row source with the derived fields, ``compile.field_expr``)."""
    node, _ = compiled(condition)
    pairs: list[Any] = []
    for clause in comparisons(node):
        pairs.append((literal(clause.text, Text), comparison_sql(clause, derived=derived)))
    clauses: Any = None
    for start in range(0, len(pairs), PAIRS_PER_OBJECT):
        chunk = pairs[start : start + PAIRS_PER_OBJECT]
        part = func.jsonb_build_object(*(item for pair in chunk for item in pair))
        clauses = part if clauses is None else clauses.op("||")(part)
    return func.jsonb_build_object("clauses", clauses)


def rule_tags_expr(tags: list[tuple[str, str]], *, derived: bool = False) -> Any:
    """The names of the rule tags (name, condition) whose condition the profile meets
    (``derived``: over a row source with the derived fields, ``compile.field_expr``)."""
    cases = [
        case((compiled(cond, True, derived)[1], literal(name, Text)), else_=None)
        for name, cond in tags
    ]
    return cast(func.array_remove(array(cases, type_=Text), None), ARRAY(Text))  # type: ignore[misc]
