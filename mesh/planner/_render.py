"""A primitive task's draft rendered as a ``TaskSpec``: parameters substituted, capabilities
mapped to the agents at hand, the planner's tag (and the request's context) added to its inputs.

The tag (``inputs["planner"]`` = ``{"type", "methods", "template"}``) is how the planner later
learns from the task's outcome: which task type it was and which methods produced it. It rides in
``inputs`` because the plan is the only thing that reaches the history (``WorkflowStarted``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mesh.errors import PlanningError, PlanTemplateError
from mesh.events import PROMPT_ROOTS, CapabilityRequirement, TaskSpec, literal
from mesh.planner._expr import substitute
from mesh.planner._request import RequestSpec
from mesh.planner._templates import Primitive

PLANNER_INPUT_KEY = "planner"
"""``TaskSpec.inputs[PLANNER_INPUT_KEY]`` = ``{"type", "methods", "template"}``."""

CONTEXT_INPUT_KEY = "context"
"""``TaskSpec.inputs[CONTEXT_INPUT_KEY]``: the request's context, for ``{context.<key>}``."""

Estimate = Callable[[Primitive], tuple[float, float]]
"""(duration seconds, cost) of one attempt of a primitive task."""


@dataclass
class Draft:
    """A primitive task placed in the plan, before rendering (its dependencies still grow)."""

    task_id: str
    primitive: Primitive
    namespace: dict[str, Any]
    methods: tuple[str, ...]
    deps: list[str] = field(default_factory=list)


def render_task(
    draft: Draft,
    version: str,
    *,
    spec: RequestSpec,
    estimate: Estimate,
    capability_map: Mapping[str, str],
    commands: bool = True,
    capabilities: dict[str, list[CapabilityRequirement]] | None = None,
) -> TaskSpec:
    """The draft as a TaskSpec; PlanningError (``template``) if substitution or bounds fail.

    ``capabilities``: a cache by primitive name, kept for one decomposition (a primitive's
    capabilities depend only on it, the request and the map)."""
    primitive, ns = draft.primitive, draft.namespace
    where = f"{primitive.source}: {primitive.name}"
    # Text without ``$`` has nothing to substitute: tested inline, since most command words
    # and many titles are fixed and this runs once per task of a 10,000-task plan.
    try:
        title = substitute(primitive.title, ns, where) if primitive.title else None
        prompt = (
            substitute(primitive.prompt, ns, where, escape=_prompt_literal)
            if primitive.prompt
            else None
        )
        command = (
            [
                p if "$" not in p else _as_text(substitute(p, ns, where, escape=literal))
                for p in primitive.command
            ]
            if primitive.command is not None and commands
            else None
        )
        inputs = substitute(dict(primitive.inputs), ns, where) if primitive.inputs else {}
    except PlanTemplateError as exc:
        raise PlanningError("template", str(exc)) from exc
    if spec.request.context:
        # How ``{context.<key>}`` reaches the agent: the plan is all that reaches the history.
        inputs.setdefault(CONTEXT_INPUT_KEY, dict(spec.request.context))
    inputs[PLANNER_INPUT_KEY] = {
        "type": primitive.name,
        "methods": list(draft.methods),
        "template": version,
    }
    duration, cost = estimate(primitive)
    wanted = None if capabilities is None else capabilities.get(primitive.name)
    if wanted is None:
        wanted = _capabilities(primitive, spec, capability_map)
        if capabilities is not None:
            capabilities[primitive.name] = wanted
    try:
        return TaskSpec(
            task_id=draft.task_id,
            name=_as_text(title)[:200] if title else draft.task_id,
            capabilities=wanted,
            command=command,
            prompt=_as_text(prompt) if prompt is not None else None,
            inputs=inputs,
            depends_on=list(dict.fromkeys(draft.deps)),
            retry=primitive.retry,
            timeout_seconds=primitive.timeout,
            resources=primitive.resources,
            estimated_duration_seconds=duration,
            estimated_cost=cost,
        )
    except ValidationError as exc:  # e.g. a substituted prompt beyond the event's bounds
        first = exc.errors(include_url=False)[0]
        field_path = ".".join(str(p) for p in first["loc"])
        raise PlanningError(
            "template", f"{where}: task {draft.task_id!r}: {field_path}: {first['msg']}"
        ) from exc


def _capabilities(
    primitive: Primitive, spec: RequestSpec, mapping: Mapping[str, str]
) -> list[CapabilityRequirement]:
    wanted = list(primitive.capabilities)
    if primitive.inherit_capabilities:
        wanted.extend(CapabilityRequirement(name=c) for c in spec.capabilities)
    out: dict[str, CapabilityRequirement] = {}
    for req in wanted:
        target = mapping.get(req.name, mapping.get("*", req.name))
        mapped = req if target == req.name else req.model_copy(update={"name": target})
        out.setdefault(mapped.name, mapped)
    return list(out.values())


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _prompt_literal(text: str) -> str:
    """Substituted text in a prompt stays text: only ``{inputs…}``/``{context…}`` are read there."""
    return literal(text, PROMPT_ROOTS)
