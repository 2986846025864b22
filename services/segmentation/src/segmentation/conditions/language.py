"""The condition language of tags and segments: tokenizer and recursive-descent parser.

Grammar (keywords are case-insensitive)::

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" or_expr ")" | comparison
    comparison := FIELD op literal | FIELD "in" list | FIELD "contains" literal
                | FIELD "is" ["not"] "null"
    op         := "=" | "!=" | ">" | ">=" | "<" | "<="
    list       := "[" literal ("," literal)* "]" | "(" literal ("," literal)* ")"
    literal    := NUMBER | STRING ("..." or '...') | true | false

The text is never evaluated: it is parsed into an AST whose fields must be
known profile fields (``fields.FIELDS``) and whose literals must match the
field's type; the AST is compiled to a SQLAlchemy expression with bound
parameters (``compile.py``). A comparison with a missing (NULL) value is false.

Limits (checked while parsing, so nothing recurses past them): at most
``MAX_LENGTH`` characters, ``MAX_CLAUSES`` comparisons, and ``MAX_DEPTH``
levels of parentheses and ``not`` around any clause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from segmentation.conditions.fields import FIELDS, FieldSpec

Literal = str | Decimal | bool


class ConditionError(ValueError):
    """A condition that does not parse or type-check; ``position`` is a 0-based offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position


class ConditionLimit(ConditionError):
    """A condition over one of the size limits (``limit_name`` is ``clauses`` or ``depth``)."""

    def __init__(self, message: str, position: int, *, limit_name: str, limit: int) -> None:
        super().__init__(message, position)
        self.limit_name = limit_name
        self.limit = limit


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT, STRING, NUMBER, OP, LPAREN, RPAREN, LBRACKET, RBRACKET, COMMA, EOF
    value: str
    position: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<NUMBER>-?\d+(?:\.\d+)?)
  | (?P<STRING>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<OP>!=|>=|<=|=|>|<)
  | (?P<LPAREN>\()
  | (?P<RPAREN>\))
  | (?P<LBRACKET>\[)
  | (?P<RBRACKET>\])
  | (?P<COMMA>,)
  | (?P<IDENT>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "contains", "true", "false", "is", "null"}
MAX_LENGTH = 4000
# A condition has at most this many comparisons, and nests parentheses and ``not`` at
# most this deep. The parser refuses the first token over either limit, so it never
# recurses deeper than MAX_DEPTH levels (a few Python frames each), and the compiled
# SQL stays far below Python's and Postgres's own recursion limits.
MAX_CLAUSES = 200
MAX_DEPTH = 32


_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
MAX_NUMBER_DIGITS = 30  # compared with float8 columns too: far inside their range


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"a condition has at most {MAX_LENGTH} characters", MAX_LENGTH)
    if "\x00" in text:  # Postgres text cannot hold it (the condition is stored as text)
        raise ConditionError("a condition cannot contain the NUL character", text.index("\x00"))
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise ConditionError(f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup
        assert kind is not None
        if kind != "ws":
            value = match.group()
            if kind == "STRING":
                if not value.endswith(value[0]) or len(value) < 2:
                    raise ConditionError("unterminated string", pos)
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            elif kind == "IDENT" and value.lower() in _KEYWORDS:
                kind, value = "KEYWORD", value.lower()
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    tokens.append(Token("EOF", "", len(text)))
    return tokens


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str  # = != > >= < <= in contains is_null is_not_null
    value: Literal | tuple[Literal, ...] | None
    position: int
    text: str  # the clause as written

    def describe(self) -> str:
        return self.text


@dataclass(frozen=True)
class BoolOp:
    op: str  # and / or
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Comparison | BoolOp | Not


class _Parser:
    def __init__(self, text: str, allowed: dict[str, FieldSpec]) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.allowed = allowed
        self.depth = 0  # parentheses and "not"s open around the current token
        self.clauses = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _is_kw(self, word: str) -> bool:
        return self.tok.kind == "KEYWORD" and self.tok.value == word

    def parse(self) -> Node:
        if self.tok.kind == "EOF":
            raise ConditionError("the condition is empty", 0)
        node = self._or()
        if self.tok.kind != "EOF":
            raise ConditionError(f"unexpected {self._show(self.tok)}", self.tok.position)
        return node

    def _show(self, tok: Token) -> str:
        return "end of condition" if tok.kind == "EOF" else repr(tok.value)

    def _or(self) -> Node:
        items = [self._and()]
        while self._is_kw("or"):
            self._advance()
            items.append(self._and())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def _and(self) -> Node:
        items = [self._not()]
        while self._is_kw("and"):
            self._advance()
            items.append(self._not())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def _nest(self) -> None:
        """One level deeper (an opening parenthesis or a ``not``), refused over MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionLimit(
                f"a condition nests parentheses and 'not' at most {MAX_DEPTH} levels deep",
                self.tok.position,
                limit_name="depth",
                limit=MAX_DEPTH,
            )
        self._advance()

    def _not(self) -> Node:
        nots = 0
        while self._is_kw("not"):  # a loop, not recursion: "not not ... not" is flat here
            self._nest()
            nots += 1
        node = self._primary()
        self.depth -= nots
        for _ in range(nots):
            node = Not(node)
        return node

    def _primary(self) -> Node:
        if self.tok.kind == "LPAREN":
            self._nest()
            node = self._or()
            if self.tok.kind != "RPAREN":
                raise ConditionError(
                    f"expected ')' but found {self._show(self.tok)}", self.tok.position
                )
            self._advance()
            self.depth -= 1
            return node
        return self._comparison()

    def _comparison(self) -> Comparison:
        start = self.tok
        if start.kind != "IDENT":
            raise ConditionError(
                f"expected a field name but found {self._show(start)}", start.position
            )
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise ConditionLimit(
                f"a condition has at most {MAX_CLAUSES} clauses",
                start.position,
                limit_name="clauses",
                limit=MAX_CLAUSES,
            )
        spec = self.allowed.get(start.value)
        if spec is None:
            raise ConditionError(
                f"unknown field {start.value!r}; known fields: {', '.join(sorted(self.allowed))}",
                start.position,
            )
        self._advance()
        op_tok = self.tok
        value: Literal | tuple[Literal, ...] | None
        if op_tok.kind == "OP":
            op = self._advance().value
            if spec.kind == "list":
                raise ConditionError(
                    f"field {spec.name!r} is a list: use 'contains'", op_tok.position
                )
            if op in {">", ">=", "<", "<="} and spec.kind in {"string", "bool"}:
                raise ConditionError(
                    f"operator {op!r} needs a number or time field, {spec.name!r} is a {spec.kind}",
                    op_tok.position,
                )
            value = self._literal(spec)
        elif op_tok.kind == "KEYWORD" and op_tok.value == "in":
            op = "in"
            self._advance()
            if spec.kind == "list":
                raise ConditionError(
                    f"field {spec.name!r} is a list: use 'contains'", op_tok.position
                )
            value = self._list(spec)
        elif op_tok.kind == "KEYWORD" and op_tok.value == "contains":
            op = "contains"
            self._advance()
            if spec.kind not in {"list", "string"}:
                raise ConditionError(
                    f"'contains' needs a list or text field, {spec.name!r} is a {spec.kind}",
                    op_tok.position,
                )
            value = self._literal(FieldSpec(spec.name, "string"))
        elif op_tok.kind == "KEYWORD" and op_tok.value == "is":
            self._advance()
            negated = self._is_kw("not")
            if negated:
                self._advance()
            if not self._is_kw("null"):
                raise ConditionError(
                    f"expected 'null' but found {self._show(self.tok)}", self.tok.position
                )
            self._advance()
            op, value = ("is_not_null" if negated else "is_null"), None
        else:
            raise ConditionError(
                f"expected an operator (= != > >= < <= in contains is) after {spec.name!r} "
                f"but found {self._show(op_tok)}",
                op_tok.position,
            )
        end = self.tokens[self.i - 1]
        end_pos = end.position + len(self._raw(end))
        return Comparison(
            spec.name, op, value, start.position, self.text[start.position : end_pos].strip()
        )

    def _raw(self, tok: Token) -> str:
        if tok.kind == "STRING":
            # the raw token is longer than its value when it has escapes; find its end
            match = _TOKEN_RE.match(self.text, tok.position)
            return match.group() if match else tok.value
        return tok.value

    def _list(self, spec: FieldSpec) -> tuple[Literal, ...]:
        open_tok = self.tok
        if open_tok.kind not in {"LBRACKET", "LPAREN"}:
            raise ConditionError(
                f'expected a list like ["a", "b"] but found {self._show(open_tok)}',
                open_tok.position,
            )
        close = "RBRACKET" if open_tok.kind == "LBRACKET" else "RPAREN"
        self._advance()
        items = [self._literal(spec)]
        while self.tok.kind == "COMMA":
            self._advance()
            items.append(self._literal(spec))
        if self.tok.kind != close:
            raise ConditionError(
                f"expected ',' or the end of the list but found {self._show(self.tok)}",
                self.tok.position,
            )
        self._advance()
        return tuple(items)

    def _number(self, spec: FieldSpec, tok: Token) -> Decimal:
        """A number in plain decimal notation (quoted or not): no exponent, NaN or infinity,
        at most MAX_NUMBER_DIGITS digits."""
        if _NUMBER_RE.fullmatch(tok.value) is None:
            raise ConditionError(
                f"{spec.name!r} is a number field; {tok.value!r} is not a number like 12 or -3.5",
                tok.position,
            )
        if sum(ch.isdigit() for ch in tok.value) > MAX_NUMBER_DIGITS:
            raise ConditionError(f"a number has at most {MAX_NUMBER_DIGITS} digits", tok.position)
        self._advance()
        return Decimal(tok.value)

    def _literal(self, spec: FieldSpec) -> Literal:
        tok = self.tok
        if tok.kind == "NUMBER":
            if spec.kind != "number":
                raise ConditionError(
                    f"{spec.name!r} is a {spec.kind} field; {tok.value} is a number", tok.position
                )
            return self._number(spec, tok)
        if tok.kind == "STRING":
            if spec.kind == "number":
                return self._number(spec, tok)
            if spec.kind == "bool":
                raise ConditionError(
                    f"{spec.name!r} is true/false; {tok.value!r} is text", tok.position
                )
            if spec.kind == "time":
                from datetime import datetime

                try:
                    parsed = datetime.fromisoformat(tok.value)
                except ValueError:
                    raise ConditionError(
                        f"{tok.value!r} is not an RFC 3339 time", tok.position
                    ) from None
                if parsed.tzinfo is None:
                    raise ConditionError(f"{tok.value!r} needs a UTC offset", tok.position)
            if spec.choices and tok.value not in spec.choices:
                raise ConditionError(
                    f"{tok.value!r} is not a value of {spec.name!r} "
                    f"(one of: {', '.join(spec.choices)})",
                    tok.position,
                )
            self._advance()
            return tok.value
        if tok.kind == "KEYWORD" and tok.value in {"true", "false"}:
            if spec.kind != "bool":
                raise ConditionError(
                    f"{spec.name!r} is a {spec.kind} field; {tok.value} is true/false",
                    tok.position,
                )
            self._advance()
            return tok.value == "true"
        raise ConditionError(f"expected a value but found {self._show(tok)}", tok.position)


def parse(text: str, *, allowed: dict[str, FieldSpec] | None = None) -> Node:
    """Parse and type-check ``text``; raises ConditionError naming the position."""
    return _Parser(text, allowed if allowed is not None else FIELDS).parse()


def comparisons(node: Node) -> list[Comparison]:
    """The clauses of a condition, in the order they are written."""
    if isinstance(node, Comparison):
        return [node]
    if isinstance(node, Not):
        return comparisons(node.item)
    out: list[Comparison] = []
    for item in node.items:
        out.extend(comparisons(item))
    return out


LIST_OF_TAGS = frozenset({"tags", "manual_tags"})


def refresh_mode(node: Node, batch_rule_tags: frozenset[str] = frozenset()) -> str:
    """``batch`` if the condition uses a field that only the recompute (or the clock)
    changes, or asks for a rule tag that is itself batch (``tags contains "x"``, x a batch
    rule tag); else ``live``. A batch condition is refreshed by every recompute (exact as of
    its ``last_computed_at``), a live one by every event that touches the member."""
    for c in comparisons(node):
        if FIELDS[c.field].recompute_only:
            return "batch"
        if c.field == "tags" and c.op == "contains" and c.value in batch_rule_tags:
            return "batch"
    return "live"


def names_tag(node: Node, tag: str) -> bool:
    """True if the condition asks whether a profile has this tag."""
    return any(
        c.field in LIST_OF_TAGS and c.op == "contains" and c.value == tag for c in comparisons(node)
    )


def describe_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return [describe_value(v) for v in value]
    return value
