"""Placeholders in argv and prompt templates: ``{prompt}``, ``{inputs.build.stdout}`` ….

Deliberately not ``str.format``: a format field may reach attributes and items of its value
(``{inputs.__class__}``) and takes format specs. Here a placeholder is a dotted path of keys
into a fixed set of values, nothing else, and each substitution stays inside the one argv element
it was written in: a prompt holding ``"; rm -rf ~"`` is one argument to a program that runs
without a shell, never a command.

The values (:func:`values_for`):

- ``{prompt}``: the task's prompt with its own placeholders filled; in argv, followed by each
  upstream task's output under a heading (:func:`prompt_with_upstream`) unless the prompt or
  the argv places ``{inputs…}`` itself;
- ``{task_id}``, ``{workflow_id}``, ``{attempt}``;
- ``{inputs.<key>…}``: the task's inputs (``{inputs}`` is all of them as JSON);
  ``{inputs.<task>…}`` is shorthand for ``{inputs.upstream.<task>…}`` (an upstream task's
  output) when ``<task>`` is not a key of the task's own inputs; ``….json.<path>`` walks the
  upstream's stdout parsed as JSON (its output object itself when it has no stdout: Python and
  HTTP agents); a number walks into a list (``json.items.0``);
- ``{context.<key>}``: the request's context (``inputs.context``, where the planner puts it).

In argv, text of the form ``{name}`` or ``{name.key.key}`` (``name`` an identifier) is a
placeholder: ``name`` must be one of :data:`PLACEHOLDERS` and every key must exist, else
``ArgvTemplateError`` (reported as the non-retriable ``bad_template``, naming the placeholder;
never a literal left in). In a prompt only ``{inputs…}`` and ``{context…}`` are placeholders
(:data:`PROMPT_PLACEHOLDERS`), so other braces in prose or code stay as written. To pass a
placeholder literally, double its braces: ``{{prompt}}`` gives ``{prompt}``. No other text is
changed, so code such as ``print({'a': {'b': 1}})`` or a JSON literal needs no escaping.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mesh.errors import ArgvTemplateError
from mesh.events import (
    ESCAPED_PLACEHOLDER,
    PLACEHOLDER,
    PROMPT_ROOTS,
    TaskAssigned,
    is_placeholder,
)

PLACEHOLDERS = ("prompt", "task_id", "workflow_id", "attempt", "inputs", "context")
"""The roots an argv placeholder may start with; ``inputs`` and ``context`` have keys below."""

PROMPT_PLACEHOLDERS = PROMPT_ROOTS
"""The roots that are placeholders inside a prompt (any other ``{word}`` there is prose)."""

UPSTREAM_PROMPT_BUDGET = 96 * 1024
"""Bytes of upstream output appended to ``{prompt}`` in argv: one argument of a Linux
``exec`` may hold 128 KiB, and the whole inputs are in ``MESH_INPUTS_FILE`` anyway."""


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]
    source: str


_Part = str | _Field


def parse(template: str, roots: Sequence[str] | None = None) -> tuple[_Part, ...]:
    """Split a template into literal text and placeholders; ``ArgvTemplateError`` if one is bad.

    ``roots`` None: argv rules (every ``{name…}`` is a placeholder, an unknown name an error);
    else only ``{name…}`` with ``name`` in ``roots`` is one and other text stays as it is.
    """
    parts: list[_Part] = []
    text: list[str] = []
    i, n = 0, len(template)
    while i < n:
        if template[i] != "{":
            text.append(template[i])
            i += 1
        elif (escaped := ESCAPED_PLACEHOLDER.match(template, i)) and is_placeholder(
            escaped.group(1), roots
        ):
            text.append("{" + escaped.group(1) + "}")
            i = escaped.end()
        elif (field := PLACEHOLDER.match(template, i)) and is_placeholder(field.group(1), roots):
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


def render(template: str, values: Mapping[str, Any], roots: Sequence[str] | None = None) -> str:
    """The template with each placeholder replaced by its value's text.

    Strings go in as they are, other JSON values as JSON (``{inputs}`` is all inputs as one JSON
    object), a missing prompt as the empty string. A missing key raises ``ArgvTemplateError``.
    """
    out: list[str] = []
    for part in parse(template, roots):
        out.append(part if isinstance(part, str) else _text(_lookup(part, values)))
    return "".join(out)


def render_argv(argv: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """Each element rendered on its own: the result has exactly as many elements as ``argv``."""
    return [render(element, values) for element in argv]


def render_prompt(prompt: str | None, values: Mapping[str, Any]) -> str | None:
    """The prompt with its ``{inputs…}`` and ``{context…}`` filled (``ArgvTemplateError`` if one
    is missing); other braces are prose and stay."""
    return None if prompt is None else render(prompt, values, PROMPT_PLACEHOLDERS)


def values_for(
    *,
    prompt: str | None,
    task_id: str,
    workflow_id: str,
    attempt: int,
    inputs: Mapping[str, Any],
    upstream_in_prompt: bool = False,
) -> dict[str, Any]:
    """The values a task offers to its templates, its prompt rendered.

    ``upstream_in_prompt``: ``{prompt}`` is followed by the upstream outputs (argv of command
    agents, so that an LLM CLI given ``{prompt}`` sees the work it builds on).
    Raises ``ArgvTemplateError`` if the prompt names an input that is not there.
    """
    context = inputs.get("context")
    values: dict[str, Any] = {
        "prompt": None,
        "task_id": task_id,
        "workflow_id": workflow_id,
        "attempt": attempt,
        "inputs": inputs,
        "context": context if isinstance(context, Mapping) else {},
    }
    rendered = render_prompt(prompt, values)
    if upstream_in_prompt and not places_inputs([prompt or ""], PROMPT_PLACEHOLDERS):
        rendered = prompt_with_upstream(rendered, inputs.get("upstream"))
    values["prompt"] = rendered
    return values


def attempt_values(assigned: TaskAssigned, *, upstream_in_prompt: bool = False) -> dict[str, Any]:
    """:func:`values_for` the attempt ``assigned``."""
    return values_for(
        prompt=assigned.spec.prompt,
        task_id=assigned.task_id,
        workflow_id=assigned.workflow_id,
        attempt=assigned.attempt,
        inputs=assigned.spec.inputs,
        upstream_in_prompt=upstream_in_prompt,
    )


def places_inputs(templates: Sequence[str], roots: Sequence[str] | None = None) -> bool:
    """Whether any of ``templates`` has an ``{inputs…}`` placeholder (its author placed the
    upstream outputs where they belong, so ``{prompt}`` need not carry them)."""
    return any(
        isinstance(part, _Field) and part.path[0] == "inputs"
        for template in templates
        for part in parse(template, roots)
    )


def prompt_with_upstream(
    prompt: str | None, upstream: Any, budget: int = UPSTREAM_PROMPT_BUDGET
) -> str | None:
    """``prompt`` followed by each upstream output (its text: ``stdout``, ``text``, else JSON)
    under a ``## Output of <task>`` heading, each cut to its share of ``budget`` bytes (UTF-8)."""
    if not isinstance(upstream, Mapping) or not upstream:
        return prompt
    share = max(budget // len(upstream), 1)
    sections = [prompt.rstrip("\n")] if prompt else []
    for task_id, output in upstream.items():
        text = output_text(output)
        encoded = text.encode()
        if len(encoded) > share:
            text = encoded[:share].decode(errors="ignore")
            text += "\n[… cut; the whole output is in the file $MESH_INPUTS_FILE]"
        sections.append(f"## Output of {task_id}\n\n{text}")
    return "\n\n".join(sections)


def output_text(output: Any) -> str:
    """A task output as text: its ``text`` or ``stdout`` string (trailing newlines dropped),
    else the output as JSON."""
    if isinstance(output, Mapping):
        for key in ("text", "stdout"):
            value = output.get(key)
            if isinstance(value, str):
                return value.rstrip("\n")
    return _text(output)


def _lookup(field: _Field, values: Mapping[str, Any]) -> Any:
    root, *rest = field.path
    if root not in values:
        raise ArgvTemplateError(f"{{{field.source}}}: no value for {{{root}}} here")
    current: Any = values[root]
    walked = [root]
    if root == "inputs" and rest:
        current, walked, rest = _upstream_shorthand(field, current, rest)
    for segment in rest:
        if segment == "json" and _is_upstream_output(walked):
            current = _as_json(field, current, walked[-1])
        elif isinstance(current, list) and segment.isdigit():
            if int(segment) >= len(current):
                where = ".".join(walked)
                raise ArgvTemplateError(
                    f"{{{field.source}}}: {where} has {len(current)} items, no item {segment}"
                )
            current = current[int(segment)]
        elif not isinstance(current, Mapping):
            where = ".".join(walked)
            raise ArgvTemplateError(
                f"{{{field.source}}}: {where} is a {_kind(current)}, not an object with keys"
            )
        elif segment not in current:
            raise ArgvTemplateError(f"{{{field.source}}}: {_missing(walked, segment)}")
        else:
            current = current[segment]
        walked.append(segment)
    return current


def _upstream_shorthand(
    field: _Field, inputs: Mapping[str, Any], rest: list[str]
) -> tuple[Any, list[str], list[str]]:
    """``inputs.<task>…`` → ``inputs.upstream.<task>…`` when ``<task>`` is not an input."""
    key = rest[0]
    if key in inputs:
        return inputs, ["inputs"], rest
    upstream = inputs.get("upstream")
    if isinstance(upstream, Mapping) and key in upstream:
        return upstream[key], ["inputs", "upstream", key], rest[1:]
    names = ", ".join(sorted(upstream)) if isinstance(upstream, Mapping) and upstream else "none"
    raise ArgvTemplateError(
        f"{{{field.source}}}: the task has no input {key!r} and no upstream task {key!r} "
        f"(upstream tasks: {names})"
    )


def _is_upstream_output(walked: Sequence[str]) -> bool:
    return len(walked) == 3 and walked[0] == "inputs" and walked[1] == "upstream"


def _as_json(field: _Field, output: Any, task_id: str) -> Any:
    """An upstream output's JSON: the command agent's parsed ``json``, its stdout parsed, or
    (a Python or HTTP agent's output, already JSON) the output itself."""
    if not isinstance(output, Mapping):
        return output
    if "json" in output:
        return output["json"]
    stdout = output.get("stdout")
    if not isinstance(stdout, str):
        return output
    try:
        return json.loads(stdout)
    except ValueError as exc:
        raise ArgvTemplateError(
            f"{{{field.source}}}: the stdout of upstream task {task_id!r} is not JSON ({exc})"
        ) from None


def _missing(walked: Sequence[str], segment: str) -> str:
    if walked == ["context"]:
        return f"the request's context has no key {segment!r}"
    if _is_upstream_output(walked):
        return f"the output of upstream task {walked[2]!r} has no key {segment!r}"
    where = ".".join(walked) if len(walked) > 1 else "the task"
    return f"{where} has no key {segment!r}"


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
    "PROMPT_PLACEHOLDERS",
    "UPSTREAM_PROMPT_BUDGET",
    "attempt_values",
    "check_template",
    "output_text",
    "parse",
    "places_inputs",
    "prompt_with_upstream",
    "render",
    "render_argv",
    "render_prompt",
    "values_for",
]
