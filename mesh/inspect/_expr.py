"""Filter expressions over decoded fields, e.g. ``type == "task.failed" and attempt > 1``.

Operators type these on a command line (``mesh tail --filter``, ``mesh dlq redrive --filter``),
and a filter may come from a script someone pasted, so it must never run code: the text is parsed
with :mod:`ast` and only a closed set of nodes is accepted, then walked by a small interpreter
(no ``eval``, no calls, no attribute access on Python objects, no comprehensions).

Accepted: comparisons (``== != < <= > >= in not in``, chained as in Python), ``and``/``or``/``not``,
field names (dotted for nested fields: ``producer.component``; ``name["key"]`` for keys that are
not identifiers), string/number/``True``/``False``/``None`` constants and lists or tuples of them
(``type in ["task.failed", "task.timed_out"]``), and a bare field as a truth test.

A field the record does not have is *missing*: every comparison with it is false (so
``attempt > 1`` simply does not match a ``workflow.started``), and so is a comparison between
values that cannot be ordered (``attempt > "x"``). Pure: standard library and ``mesh.errors`` only.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mesh.errors import ExpressionError

MAX_EXPRESSION_CHARS = 2_000
_MAX_NODES = 400


class _Missing:
    """The value of a field the record does not have."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_FORBIDDEN_HINTS: dict[type[ast.AST], str] = {
    ast.Call: "function calls are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.BinOp: "arithmetic is not allowed; compare fields with constants",
    ast.IfExp: "'x if c else y' is not allowed",
    ast.NamedExpr: "':=' is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
}


@dataclass(frozen=True)
class Filter:
    """A parsed, checked filter; call :meth:`matches` with a record's fields."""

    text: str
    _tree: ast.expr

    def matches(self, fields: Mapping[str, Any]) -> bool:
        """True if the record with these fields passes the filter (never raises)."""
        return bool(_truth(_evaluate(self._tree, fields)))

    @property
    def names(self) -> frozenset[str]:
        """The top-level field names the expression reads (to check them against a schema)."""
        return frozenset(node.id for node in ast.walk(self._tree) if isinstance(node, ast.Name)) - {
            "true",
            "false",
            "null",
        }


def parse_filter(
    text: str, *, known: Collection[str] | None = None, values: Collection[str] = ()
) -> Filter:
    """Parse and check ``text``; with ``known``, a top-level name outside it is an error (a typo
    would otherwise silently match nothing). ``values`` are texts people compare with but may
    forget to quote (event types: ``type == task.failed`` reads a field ``task.failed``): such
    a name is an error that suggests the quotes. Raises ``ExpressionError`` with a readable
    reason."""
    shown = _shown(text)
    if not text.strip():
        raise ExpressionError("empty filter expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"filter expression is {len(text)} characters, over the limit of {MAX_EXPRESSION_CHARS}"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(
            f'bad filter {shown}: {exc.msg}{where} (write e.g. type == "task.failed" and '
            "attempt > 1)"
        ) from None
    nodes = list(ast.walk(tree))
    if len(nodes) > _MAX_NODES:
        raise ExpressionError(f"filter {shown} is too complex ({len(nodes)} nodes)")
    _check(tree.body, shown)
    result = Filter(text, tree.body)
    for path in _paths(tree.body):
        if path in values:
            quoted = " ".join(text.replace(path, f'"{path}"').split())
            raise ExpressionError(
                f"bad filter {shown}: {path} is not a field name; to compare with the text "
                f"{path!r}, quote it: {quoted!r}"
            )
    if known is not None:
        unknown = sorted(result.names - set(known))
        if unknown:
            raise ExpressionError(
                f"bad filter {shown}: unknown field {unknown[0]!r}; a text to compare with goes "
                f'in quotes ("{unknown[0]}") (fields include: {", ".join(sorted(known)[:40])})'
            )
    return result


def _paths(node: ast.expr) -> list[str]:
    """Every field path the expression reads, dotted (``task.failed``), outermost first."""
    found: list[str] = []
    for item in ast.walk(node):
        parts: list[str] = []
        current: ast.AST = item
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if isinstance(current, ast.Name) and isinstance(item, ast.Attribute | ast.Name):
            found.append(".".join([current.id, *reversed(parts)]))
    return found


def _shown(text: str) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= 80 else one_line[:79] + "…")


def _check(node: ast.expr, shown: str) -> None:
    """Accept only the closed set of nodes the interpreter knows."""

    def fail(reason: str, at: ast.AST) -> ExpressionError:
        column = getattr(at, "col_offset", None)
        where = f" (at column {column + 1})" if column is not None else ""
        return ExpressionError(f"bad filter {shown}: {reason}{where}")

    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, shown)
    elif isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            _check(node.operand, shown)
        elif isinstance(node.op, ast.USub | ast.UAdd) and _is_number(node.operand):
            return
        else:
            raise fail("only 'not' and a sign before a number are allowed", node)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                word = "'is'/'is not'" if isinstance(op, ast.Is | ast.IsNot) else "this operator"
                raise fail(f"{word} is not allowed; use == or !=", node)
        for operand in (node.left, *node.comparators):
            _check(operand, shown)
    elif isinstance(node, ast.Name):
        return
    elif isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise fail(f"field names may not start with '_' ({node.attr!r})", node)
        _check_path(node.value, shown, fail)
    elif isinstance(node, ast.Subscript):
        key = node.slice
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str | int)):
            raise fail("only a string or number constant may go inside [ ]", node)
        _check_path(node.value, shown, fail)
    elif isinstance(node, ast.Constant):
        if not (node.value is None or isinstance(node.value, str | int | float | bool)):
            raise fail(f"constant {node.value!r} is not allowed", node)
    elif isinstance(node, ast.List | ast.Tuple | ast.Set):
        for element in node.elts:
            if not (isinstance(element, ast.Constant) or _is_number(element)):
                raise fail("lists may hold only constants", element)
            _check(element, shown)
    else:
        reason = _FORBIDDEN_HINTS.get(type(node), f"{type(node).__name__} is not allowed")
        raise fail(reason, node)


def _check_path(node: ast.expr, shown: str, fail: Callable[[str, ast.AST], Exception]) -> None:
    if isinstance(node, ast.Name):
        return
    if isinstance(node, ast.Attribute | ast.Subscript):
        _check(node, shown)
        return
    raise fail("'.' and '[ ]' may follow only a field name", node)


def _is_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _is_number(node.operand)
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    )


def _evaluate(node: ast.expr, fields: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_truth(_evaluate(v, fields)) for v in node.values)
        return any(_truth(_evaluate(v, fields)) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, fields)
        if isinstance(node.op, ast.Not):
            return not _truth(operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, fields)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, fields)
            if not _compare(_COMPARE[type(op)], left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Name):
        aliases = {"true": True, "false": False, "null": None}
        if node.id in aliases and node.id not in fields:
            return aliases[node.id]
        return fields.get(node.id, MISSING)
    if isinstance(node, ast.Attribute):
        return _item(_evaluate(node.value, fields), node.attr)
    if isinstance(node, ast.Subscript):
        key = node.slice.value if isinstance(node.slice, ast.Constant) else None
        assert isinstance(key, str | int)  # _check allows only these
        return _item(_evaluate(node.value, fields), key)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [_evaluate(element, fields) for element in node.elts]
    raise AssertionError(f"unchecked node {type(node).__name__}")  # _check rejects the rest


def _item(container: Any, key: str | int) -> Any:
    if isinstance(container, Mapping):
        return container.get(key, MISSING)
    if isinstance(container, list | tuple) and isinstance(key, int) and -len(container) <= key:
        return container[key] if key < len(container) else MISSING
    return MISSING


def _compare(op: Callable[[Any, Any], Any], left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return False
    if isinstance(right, list) and MISSING in right:
        right = [value for value in right if value is not MISSING]
    try:
        return bool(op(left, right))
    except TypeError:  # e.g. 3 > "x", or 1 in 2: such a record simply does not match
        return False


def _truth(value: Any) -> bool:
    return value is not MISSING and bool(value)


__all__ = ["MAX_EXPRESSION_CHARS", "MISSING", "Filter", "parse_filter"]
