"""Placeholders in argv templates: ``{prompt}``, ``{inputs.upstream.B.stdout}``, ``{{prompt}}``.

Deliberately not ``str.format``: a format field may reach attributes and items of its value
(``{inputs.__class__}``) and takes format specs. Here a placeholder is a dotted path of dict keys
into a fixed set of values, nothing else, and each substitution stays inside the one argv element
it was written in: a prompt holding ``"; rm -rf ~"`` is one argument to a program that runs
without a shell, never a command.

Text of the form ``{name}`` or ``{name.key.key}`` (``name`` an identifier) is a placeholder:
``name`` must be one of :data:`PLACEHOLDERS` and every key must exist, else ``ArgvTemplateError``
(reported as the non-retriable ``bad_template``). To pass such text literally, double its braces:
``{{prompt}}`` gives ``{prompt}``. No other text is changed, so code in a task's command, such
as ``print({'a': {'b': 1}})`` or a JSON literal, needs no escaping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mesh.errors import ArgvTemplateError

PLACEHOLDERS = ("prompt", "task_id", "workflow_id", "attempt", "inputs")
"""The roots a placeholder may start with; only ``inputs`` has keys below it."""


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]
    source: str


_Part = str | _Field


_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[^{}]*)?"
_FIELD = re.compile(r"\{(" + _PATH + r")\}")
_ESCAPED = re.compile(r"\{\{(" + _PATH + r")\}\}")


def parse(template: str) -> tuple[_Part, ...]:
    """Split a template into literal text and placeholders; ``ArgvTemplateError`` if one is bad."""
    parts: list[_Part] = []
    text: list[str] = []
    i, n = 0, len(template)
    while i < n:
        if template[i] != "{":
            text.append(template[i])
            i += 1
        elif escaped := _ESCAPED.match(template, i):
            text.append("{" + escaped.group(1) + "}")
            i = escaped.end()
        elif field := _FIELD.match(template, i):
            if text:
                parts.append("".join(text))
                text.clear()
            parts.append(_field(field.group(1)))
            i = field.end()
        else:
            text.append("{")
            i += 1
    if text:
        parts.append("".join(text))
    return tuple(parts)


def _field(source: str) -> _Field:
    path = tuple(source.split("."))
    if path[0] not in PLACEHOLDERS:
        known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
        raise ArgvTemplateError(
            f"unknown placeholder {{{source}}}; known: {known} (write {{{{{source}}}}} for "
            "literal braces)"
        )
    if any(not segment for segment in path):
        raise ArgvTemplateError(f"empty key in placeholder {{{source}}}")
    return _Field(path, source)


def check_template(template: str) -> None:
    """Fail early (at agent start) on a template that could never render."""
    parse(template)


def render(template: str, values: Mapping[str, Any]) -> str:
    """The template with each placeholder replaced by its value's text.

    Strings go in as they are, other JSON values as JSON (``{inputs}`` is all inputs as one JSON
    object), a missing prompt as the empty string. A missing key raises ``ArgvTemplateError``.
    """
    out: list[str] = []
    for part in parse(template):
        out.append(part if isinstance(part, str) else _text(_lookup(part, values)))
    return "".join(out)


def render_argv(argv: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """Each element rendered on its own: the result has exactly as many elements as ``argv``."""
    return [render(element, values) for element in argv]


def values_for(
    *,
    prompt: str | None,
    task_id: str,
    workflow_id: str,
    attempt: int,
    inputs: Mapping[str, Any],
) -> dict[str, Any]:
    """The values a task offers to its templates."""
    return {
        "prompt": prompt,
        "task_id": task_id,
        "workflow_id": workflow_id,
        "attempt": attempt,
        "inputs": inputs,
    }


def _lookup(field: _Field, values: Mapping[str, Any]) -> Any:
    current: Any = values
    walked: list[str] = []
    for segment in field.path:
        if not isinstance(current, Mapping):
            where = ".".join(walked)
            raise ArgvTemplateError(
                f"{{{field.source}}}: {where} is a {_kind(current)}, not an object with keys"
            )
        if segment not in current:
            where = ".".join(walked) or "the task"
            raise ArgvTemplateError(f"{{{field.source}}}: {where} has no key {segment!r}")
        current = current[segment]
        walked.append(segment)
    return current


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _kind(value: Any) -> str:
    kinds = {list: "list", tuple: "list", str: "string", bool: "boolean", int: "number"}
    return "null" if value is None else kinds.get(type(value), "number")


__all__ = [
    "PLACEHOLDERS",
    "check_template",
    "parse",
    "render",
    "render_argv",
    "values_for",
]
