"""Template expressions: ``${path}`` substitution and method preconditions.

Deliberately tiny and closed (no ``eval``, no Jinja): a template may read values by dotted path
from a fixed namespace (``request``, ``context``, ``requirements``, ``constraints``, ``params``,
``item``, ``index``, ``depth``) and test them with a handful of operators. Templates come from
user directories, so they must not be able to run code inside the planner.

Substitution: a string that is exactly ``${path}`` becomes the value itself (a list stays a
list, so ``for_each: ${context.files}`` works); elsewhere ``${path}`` is replaced by the value's
text (JSON for non-strings). ``${path|default}`` gives a default, read as a YAML scalar
(``${context.files|[]}``). ``$${`` writes a literal ``${``.

In agent commands and prompts, the agents' own ``{placeholder}`` syntax must survive, so
substituted text is made literal there (``mesh.events.literal``): a description holding ``{x}``
cannot smuggle in a placeholder, and reaches the agent as written.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from mesh.errors import PlanTemplateError

_WHOLE = re.compile(r"^\$\{([^}]*)\}$")
_ANY = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_MISSING = object()

OPERATORS = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "exists",
    "empty",
    "gt",
    "gte",
    "lt",
    "lte",
    "matches",
    "contains",
)


def lookup(namespace: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (list items by index), or the module's missing marker."""
    current: Any = namespace
    for segment in _segments(path):
        if type(current) is dict:  # the namespace's own type: no abc check on the hot path
            current = current.get(segment, _MISSING)
            if current is _MISSING:
                return _MISSING
        elif isinstance(current, Mapping) and segment in current:
            current = current[segment]
        elif isinstance(current, Sequence) and not isinstance(current, str) and segment.isdigit():
            index = int(segment)
            if index >= len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


@functools.lru_cache(maxsize=4_096)
def _segments(path: str) -> tuple[str, ...]:
    return tuple(path.strip().split("."))


def _resolve(expr: str, namespace: Mapping[str, Any], where: str) -> Any:
    path, sep, default = _parts(expr)
    value = lookup(namespace, path)
    if value is _MISSING or value is None:
        if sep:
            return yaml.safe_load(default) if default.strip() else ""
        raise PlanTemplateError(
            f"{where}: ${{{path.strip()}}} is not set (give it in the request, or write "
            f"${{{path.strip()}|default}} in the template)"
        )
    return value


@functools.lru_cache(maxsize=4_096)
def _parts(expr: str) -> tuple[str, str, str]:
    return expr.partition("|")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if type(value) is int:  # the common case (indices, counts): no need for the JSON encoder
        return str(value)
    return json.dumps(value, ensure_ascii=False)


Piece = str | tuple[str]
"""Literal text, or ``(expression,)`` to resolve."""


@functools.lru_cache(maxsize=4_096)
def _compiled(template: str) -> tuple[Piece, ...] | tuple[str]:
    """A template string cut into literal text and expressions, once per distinct template
    (the same title or prompt is rendered for every task a step repeats): a 1-tuple holding
    the whole string when it has nothing to substitute, ``("", (expr,))`` when it is exactly one
    expression (which substitutes the value itself, not its text)."""
    whole = _WHOLE.match(template)
    if whole is not None:
        return ("", (whole.group(1),))
    pieces: list[Piece] = []
    at = 0
    for match in _ANY.finditer(template):
        pieces.append(template[at : match.start()])
        pieces.append("${" if match.group(0) == "$${" else (match.group(1),))
        at = match.end()
    pieces.append(template[at:])
    return tuple(p for p in pieces if p != "")


def substitute(
    value: Any,
    namespace: Mapping[str, Any],
    where: str,
    *,
    escape: Callable[[str], str] | None = None,
) -> Any:
    """``value`` with every ``${...}`` replaced (recursively through lists and mappings);
    ``escape`` applies to the text each one puts in (e.g. so that it stays literal text in an
    agent's template)."""
    kind = type(value)
    if kind is int or kind is float or kind is bool or value is None:
        return value  # most template values: skip the abc checks below
    if kind is str or isinstance(value, str):
        if "$" not in value:
            return value
        pieces = _compiled(value)
        if len(pieces) == 2 and pieces[0] == "" and isinstance(pieces[1], tuple):
            result = _resolve(pieces[1][0], namespace, where)
            if escape is not None and isinstance(result, str):
                return escape(result)
            return result
        out: list[str] = []
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                text = _text(_resolve(piece[0], namespace, where))
                out.append(escape(text) if escape is not None else text)
        return "".join(out)
    if kind is dict or isinstance(value, Mapping):
        return {str(k): substitute(v, namespace, where, escape=escape) for k, v in value.items()}
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        return [substitute(v, namespace, where, escape=escape) for v in value]
    return value


@dataclass(frozen=True)
class Condition:
    """One precondition: ``path op operand``, or ``any``/``all``/``not`` over others."""

    op: str
    path: str = ""
    operand: Any = None
    children: tuple[Condition, ...] = ()

    def holds(self, namespace: Mapping[str, Any]) -> bool:
        """True if the condition is met in ``namespace``."""
        if self.op == "any":
            return any(c.holds(namespace) for c in self.children)
        if self.op == "all":
            return all(c.holds(namespace) for c in self.children)
        if self.op == "not":
            return not self.children[0].holds(namespace)
        return _test(self.op, lookup(namespace, self.path), self.operand)

    def describe(self) -> str:
        """The condition in words, for 'no method applies' messages."""
        if self.op in ("any", "all"):
            joined = f" {'or' if self.op == 'any' else 'and'} ".join(
                c.describe() for c in self.children
            )
            return f"({joined})"
        if self.op == "not":
            return f"not {self.children[0].describe()}"
        if self.op in ("exists", "empty"):
            return f"{self.path} {'' if self.operand else 'not '}{self.op}"
        return f"{self.path} {self.op} {json.dumps(self.operand)}"


def _test(op: str, value: Any, operand: Any) -> bool:
    present = value is not _MISSING and value is not None
    if op == "exists":
        return present == bool(operand)
    if op == "empty":
        is_empty = not present or (isinstance(value, str | list | dict | tuple) and not value)
        return is_empty == bool(operand)
    if not present:
        return op in ("not_equals", "not_in")
    try:
        if op == "equals":
            return bool(value == operand)
        if op == "not_equals":
            return bool(value != operand)
        if op == "in":
            return value in operand
        if op == "not_in":
            return value not in operand
        if op == "contains":
            return operand in value
        if op == "matches":
            return re.search(str(operand), str(value)) is not None
        ordered = {"gt": value > operand, "gte": value >= operand}
        ordered |= {"lt": value < operand, "lte": value <= operand}
        return bool(ordered[op])
    except TypeError:
        return False  # comparing a text with a number: the precondition does not hold


def parse_conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    """Conditions from YAML: a list of mappings (all must hold); PlanTemplateError if malformed."""
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    return tuple(_parse_one(item, f"{where}[{i}]") for i, item in enumerate(items))


def _parse_one(item: Any, where: str) -> Condition:
    if not isinstance(item, Mapping):
        raise PlanTemplateError(
            f"{where}: a condition is a mapping such as {{path: x, exists: true}}"
        )
    keys = set(item)
    for combinator in ("any", "all"):
        if keys == {combinator}:
            children = item[combinator]
            if not isinstance(children, list) or not children:
                raise PlanTemplateError(f"{where}.{combinator}: expected a non-empty list")
            return Condition(
                combinator, children=parse_conditions(children, f"{where}.{combinator}")
            )
    if keys == {"not"}:
        return Condition("not", children=(_parse_one(item["not"], f"{where}.not"),))
    ops = keys - {"path"}
    if "path" not in keys or len(ops) != 1 or not ops <= set(OPERATORS):
        raise PlanTemplateError(
            f"{where}: expected 'path' and exactly one of {', '.join(OPERATORS)} "
            f"(or any/all/not), got {sorted(keys)}"
        )
    op = ops.pop()
    operand = item[op]
    if op in ("in", "not_in") and not isinstance(operand, list):
        raise PlanTemplateError(f"{where}.{op}: expected a list")
    if op == "matches":
        try:
            re.compile(str(operand))
        except re.error as exc:
            raise PlanTemplateError(f"{where}.matches: bad regular expression: {exc}") from None
    return Condition(op, path=str(item["path"]), operand=operand)
