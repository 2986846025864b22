"""Compile a parsed condition into a SQLAlchemy boolean over the profiles table."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Numeric,
    Text,
    and_,
    cast,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
)
from sqlalchemy.dialects.postgresql import ARRAY

from segmentation.conditions.fields import DERIVED_FIELDS, FIELDS, RULE_TAG_FIELDS, FieldSpec
from segmentation.conditions.language import Comparison, Node, Not, parse
from segmentation.profiles.models import Profile


def field_expr(name: str, *, rule_ctx: bool = False, derived: bool = False) -> ColumnElement[Any]:
    """The field's SQL expression over ``profiles``; with ``derived``, a field computed from
    other columns (``DERIVED_FIELDS``) is read as the column of that name which the row
    source computes once (``derived_columns``)."""
    if derived and name in DERIVED_FIELDS:
        return literal_column(f"profiles.{name}", Numeric())
    spec = FIELDS[name]
    assert spec.expr is not None
    return spec.expr(rule_ctx)


def derived_columns() -> list[tuple[str, ColumnElement[Any]]]:
    """The derived fields (name, expression over ``profiles``), for a row source that
    ``derived`` expressions read."""
    return [(name, field_expr(name)) for name in DERIVED_FIELDS]


def _value(spec: FieldSpec, value: object) -> object:
    """A literal as a SQL value: numbers are compared as ``numeric`` whatever the column
    (an integer column against 2.5 must not round it, nor fail to bind it)."""
    if spec.kind == "time" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if spec.kind == "number":
        return literal(value, Numeric())
    return value


def _has(array: ColumnElement[Any], value: str) -> ColumnElement[bool]:
    element = cast(literal([value], ARRAY(Text)), ARRAY(Text))
    return array.op("@>", is_comparison=True)(element)


def comparison_sql(
    c: Comparison, *, rule_ctx: bool = False, derived: bool = False
) -> ColumnElement[bool]:
    """One clause, two-valued: a NULL field makes it false (never unknown)."""
    spec = FIELDS[c.field]
    col = field_expr(c.field, rule_ctx=rule_ctx, derived=derived)
    if c.op == "is_null":
        return col.is_(None)
    if c.op == "is_not_null":
        return col.is_not(None)
    expr: ColumnElement[bool]
    if c.op == "contains":
        assert isinstance(c.value, str)
        if c.field == "tags" and not rule_ctx:
            # manual or rule tags: no concatenation of the two arrays per evaluation
            profiles = Profile.__table__.c
            expr = or_(_has(profiles.manual_tags, c.value), _has(profiles.rule_tags, c.value))
        elif spec.kind == "list":
            expr = _has(col, c.value)
        else:
            expr = func.strpos(func.lower(col), c.value.lower()) > 0
    elif c.op == "in":
        assert isinstance(c.value, tuple)
        expr = col.in_([_value(spec, v) for v in c.value])
    else:
        v = _value(spec, c.value)
        ops = {
            "=": col.__eq__,
            "!=": col.__ne__,
            ">": col.__gt__,
            ">=": col.__ge__,
            "<": col.__lt__,
            "<=": col.__le__,
        }
        expr = ops[c.op](v)
    return func.coalesce(expr, false())


def to_sql(node: Node, *, rule_ctx: bool = False, derived: bool = False) -> ColumnElement[bool]:
    if isinstance(node, Comparison):
        return comparison_sql(node, rule_ctx=rule_ctx, derived=derived)
    if isinstance(node, Not):
        return not_(to_sql(node.item, rule_ctx=rule_ctx, derived=derived))
    parts = [to_sql(item, rule_ctx=rule_ctx, derived=derived) for item in node.items]
    return and_(*parts) if node.op == "and" else or_(*parts)


@lru_cache(maxsize=2048)
def compiled(
    text: str, rule_ctx: bool = False, derived: bool = False
) -> tuple[Node, ColumnElement[bool]]:
    """Parse and compile once per distinct condition text (stored conditions repeat);
    ``derived``: over a row source with the ``derived_columns`` (``field_expr``)."""
    node = parse(text, allowed=RULE_TAG_FIELDS if rule_ctx else FIELDS)
    return node, to_sql(node, rule_ctx=rule_ctx, derived=derived)
