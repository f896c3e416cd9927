"""The HTN template library: compound and primitive task definitions read from YAML.

A file holds ``tasks``: a *compound* task has ``methods`` (alternative decompositions, each with
preconditions and ordered ``steps``); a *primitive* task is what an agent runs (capabilities,
prompt and/or command, resource and duration priors, retry and timeout). Any task name can be a
request type. Built-ins ship in ``mesh/planner/templates``; directories from
``MESH_PLANNER_TEMPLATES`` are read after them, and a later definition of a name replaces an
earlier one (so a team can override ``feature`` without forking mesh).

The format, in brief::

    version: 1
    tasks:
      feature:                        # compound: alternative methods, tried by preconditions
        methods:
          - name: design_first
            when: [{path: context.tests, not_equals: false}]   # all must hold (see _expr)
            steps:
              - {id: design, task: design}
              - {id: code, task: implement, after: [design],
                 with: {lang: "${context.language|python}"}}
              - {id: check, task: review_file, for_each: "${context.files|[]}",
                 with: {file: "${item}"}, after: [code]}
      implement:                      # primitive: what one agent runs
        capabilities: [code]          # or {name, min_level, tags}
        inherit_capabilities: true    # also the request's required capabilities
        duration: 15m                 # cold-start prior; learned from completions
        cost: 0.2
        resources: {cpu: 1, memory_mb: 1024}
        timeout: 1h
        retry: {max_attempts: 2}
        prompt: "Implement ${request.description} in ${params.lang}"
        command: [python3, -c, "...", "{prompt}"]   # {...}: the agent's placeholders
        inputs: {}

Loading (``_loader``) checks syntax only and fails loudly (one line naming the file and field).
Whether steps refer to tasks and steps that exist is checked when a type is planned, so one
broken user template rejects requests of its own type and never stops the planner serving the
others; :meth:`TemplateLibrary.problems` lists those issues up front for a start-up warning.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mesh.events import CapabilityRequirement, Resources, RetryPolicy
from mesh.planner._expr import Condition

DEFAULT_DURATION_SECONDS = 60.0
"""Prior duration of a primitive task whose template gives none."""


@dataclass(frozen=True)
class Step:
    """One step of a method: a task to expand, its sibling dependencies and parameters."""

    id: str
    task: str
    after: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    for_each: Any = None
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Method:
    """One way of decomposing a compound task, usable when all of ``when`` holds."""

    name: str
    steps: tuple[Step, ...]
    when: tuple[Condition, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Compound:
    """A task that is decomposed by one of its methods."""

    name: str
    methods: tuple[Method, ...]
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class Primitive:
    """A task an agent runs; ``duration`` and ``cost`` are the cold-start priors."""

    name: str
    title: str | None
    capabilities: tuple[CapabilityRequirement, ...]
    inherit_capabilities: bool
    duration: float
    cost: float
    resources: Resources
    timeout: float | None
    retry: RetryPolicy
    prompt: str | None
    command: tuple[str, ...] | None
    inputs: Mapping[str, Any]
    description: str = ""
    source: str = ""


TaskDef = Compound | Primitive


class TemplateLibrary:
    """Task definitions by name, with a content digest per request type for cache keys."""

    def __init__(self, tasks: Mapping[str, TaskDef], raw: Mapping[str, Any]) -> None:
        self.tasks = dict(tasks)
        self._raw = dict(raw)
        self._versions: dict[str, str] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.tasks

    def get(self, name: str) -> TaskDef | None:
        return self.tasks.get(name)

    @property
    def types(self) -> tuple[str, ...]:
        """Compound tasks no other task uses as a step: the request types a user would mean.

        (Any task name can still be requested; these are the ones worth listing.)
        """
        used = {
            step.task
            for task in self.tasks.values()
            if isinstance(task, Compound)
            for method in task.methods
            for step in method.steps
        }
        return tuple(
            sorted(n for n, t in self.tasks.items() if isinstance(t, Compound) and n not in used)
        )

    def suggest(self, name: str) -> str | None:
        """The closest known type to a misspelt one."""
        close = difflib.get_close_matches(name, sorted(self.tasks), 1, 0.75)
        return close[0] if close else None

    def version(self, name: str) -> str:
        """Digest of every definition reachable from ``name``: changes when any of them does."""
        if name not in self._versions:
            reachable = sorted(self._reachable(name))
            blob = json.dumps([[n, self._raw.get(n)] for n in reachable], sort_keys=True)
            self._versions[name] = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return self._versions[name]

    def _reachable(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            task = self.tasks.get(current)
            if isinstance(task, Compound):
                todo.extend(step.task for method in task.methods for step in method.steps)
        return seen

    def problems(self) -> list[str]:
        """Static issues (steps naming unknown tasks or siblings) to warn about at start-up."""
        found: list[str] = []
        for name, task in sorted(self.tasks.items()):
            if not isinstance(task, Compound):
                continue
            for method in task.methods:
                ids = {step.id for step in method.steps}
                for step in method.steps:
                    where = f"{task.source}: {name}/{method.name}/{step.id}"
                    if step.task not in self.tasks:
                        hint = self.suggest(step.task)
                        found.append(
                            f"{where}: no task {step.task!r}"
                            + (f" (did you mean {hint!r}?)" if hint else "")
                        )
                    found.extend(
                        f"{where}: after {dep!r}, which is no step of this method"
                        for dep in step.after
                        if dep not in ids
                    )
        return found
