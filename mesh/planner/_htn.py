"""HTN decomposition: a request's type, expanded through the template library into tasks.

A compound task becomes the steps of one applicable method (its preconditions hold for the
request, its context and the parameters passed down); a primitive task becomes one ``TaskSpec``.
Step ``after`` lists are resolved to the primitive tasks they stand for: a step depends on the
*exits* of the steps it names (their last tasks), and its own *entries* (first tasks) carry those
dependencies. A step that expands to nothing (an empty ``for_each``, a false ``when``) passes its
own dependencies through, so order is kept without phantom tasks.

Task ids are step ids joined by ``/`` (``modules[1]/split``), never ``.``: agents address
upstream outputs as ``{inputs.upstream.<task id>.stdout}`` and split that path on dots.

Where a compound task has several applicable methods, a *chooser* decides (the planner's bandit);
it sees a preview of each method (its critical-path duration and cost, with nested choices taken
as the first applicable method) so it can weigh success against time. ``forced`` pins choices by
path, which is how the optimiser tries an alternative.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mesh.errors import PlanningError, PlanTemplateError
from mesh.events import CapabilityRequirement, TaskSpec
from mesh.planner._expr import substitute
from mesh.planner._render import PLANNER_INPUT_KEY, Draft, Estimate, render_task
from mesh.planner._request import RequestSpec
from mesh.planner._schedule import longest_path
from mesh.planner._templates import Compound, Method, Primitive, Step, TemplateLibrary

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "PLANNER_INPUT_KEY",
    "ChoicePoint",
    "Chooser",
    "Decomposer",
    "Decomposition",
    "Estimate",
    "Preview",
    "TaskTag",
    "first_method",
]

DEFAULT_MAX_DEPTH = 8

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_\-\[\]/:@+]")


@dataclass(frozen=True)
class ChoicePoint:
    """A compound task instance with more than one applicable method."""

    path: str
    compound: str
    methods: tuple[str, ...]


@dataclass(frozen=True)
class Preview:
    """A method's expansion in brief: critical-path duration, total cost, number of tasks."""

    method: str
    duration: float
    cost: float
    tasks: int


Chooser = Callable[[ChoicePoint, Mapping[str, Preview]], str]


def first_method(point: ChoicePoint, _previews: Mapping[str, Preview]) -> str:
    """The default chooser: the first applicable method in template order."""
    return point.methods[0]


@dataclass(frozen=True)
class TaskTag:
    """Why a task exists: its primitive type and the ``compound/method`` choices above it."""

    task_type: str
    methods: tuple[str, ...]


@dataclass(frozen=True)
class Decomposition:
    """The tasks a request expands to, the choices made, and the template version used."""

    root: str
    version: str
    tasks: tuple[TaskSpec, ...]
    tags: Mapping[str, TaskTag]
    choices: tuple[tuple[ChoicePoint, str], ...] = ()


@dataclass
class _Fragment:
    entries: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)


class Decomposer:
    """Expands request types through a template library (pure; no I/O)."""

    def __init__(
        self,
        library: TemplateLibrary,
        *,
        estimate: Estimate | None = None,
        capability_map: Mapping[str, str] | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
        task_commands: bool = True,
    ) -> None:
        self.library = library
        self.estimate: Estimate = estimate or (lambda p: (p.duration, p.cost))
        self.capability_map = dict(capability_map or {})
        self.max_depth = max_depth
        self.task_commands = task_commands

    def decompose(
        self,
        spec: RequestSpec,
        choose: Chooser = first_method,
        forced: Mapping[str, str] | None = None,
    ) -> Decomposition:
        """The tasks for ``spec``; PlanningError (unknown_type, no_method, template, depth)."""
        root = spec.task_type
        if root not in self.library:
            known = ", ".join(self.library.types) or "none"
            hint = self.library.suggest(root)
            did_you = f"; did you mean {hint!r}?" if hint else ""
            raise PlanningError(
                "unknown_type",
                f"no template for request type {root!r}{did_you} (known types: {known})",
            )
        run = _Run(self, spec, choose, dict(forced or {}), preview=False)
        base = spec.namespace()
        run.expand(root, "", {**base, "params": {}, "depth": 0}, 0, (root,), ())
        version = self.library.version(root)
        capabilities: dict[str, list[CapabilityRequirement]] = {}
        tasks = tuple(
            render_task(
                d,
                version,
                spec=spec,
                estimate=self.estimate,
                capability_map=self.capability_map,
                commands=self.task_commands,
                capabilities=capabilities,
            )
            for d in run.drafts
        )
        shared: dict[tuple[str, tuple[str, ...]], TaskTag] = {}  # one per type and methods
        tags = {
            d.task_id: shared.get((d.primitive.name, d.methods))
            or shared.setdefault(
                (d.primitive.name, d.methods), TaskTag(d.primitive.name, d.methods)
            )
            for d in run.drafts
        }
        return Decomposition(root, version, tasks, tags, tuple(run.choices))


class _Run:
    """One decomposition: the drafts made so far and the choices taken."""

    def __init__(
        self,
        owner: Decomposer,
        spec: RequestSpec,
        choose: Chooser,
        forced: dict[str, str],
        *,
        preview: bool,
    ) -> None:
        self.owner = owner
        self.spec = spec
        self.choose = choose
        self.forced = forced
        self.preview = preview
        self.drafts: list[Draft] = []
        self.by_id: dict[str, Draft] = {}
        self.choices: list[tuple[ChoicePoint, str]] = []

    def expand(
        self,
        name: str,
        path: str,
        namespace: dict[str, Any],
        depth: int,
        chain: tuple[str, ...],
        methods: tuple[str, ...],
    ) -> _Fragment:
        task = self.owner.library.get(name)
        if task is None:
            raise PlanningError(
                "template",
                f"{' → '.join(chain[:-1])} uses task {name!r}, which no template defines",
            )
        if depth > self.owner.max_depth:
            raise PlanningError(
                "depth_limit",
                f"decomposition is deeper than {self.owner.max_depth} levels: {' → '.join(chain)}",
            )
        if isinstance(task, Primitive):
            task_id = path or _UNSAFE_ID.sub("_", name)
            draft = Draft(task_id, task, namespace, methods)
            self.drafts.append(draft)
            self.by_id.setdefault(task_id, draft)
            return _Fragment([task_id], [task_id])
        method = self._method(task, path, namespace)
        tag = (*methods, f"{task.name}/{method.name}")
        return self._expand_method(task, method, path, namespace, depth, chain, tag)

    def _method(self, task: Compound, path: str, namespace: dict[str, Any]) -> Method:
        applicable = [m for m in task.methods if all(c.holds(namespace) for c in m.when)]
        if not applicable:
            why = "; ".join(
                f"{m.name} needs "
                + " and ".join(c.describe() for c in m.when if not c.holds(namespace))
                for m in task.methods
            )
            where = f" at {path}" if path else ""
            raise PlanningError("no_method", f"no method of {task.name!r}{where} applies: {why}")
        by_name = {m.name: m for m in applicable}
        if len(applicable) == 1:
            return applicable[0]
        point = ChoicePoint(path, task.name, tuple(by_name))
        if path in self.forced and self.forced[path] in by_name:
            chosen = self.forced[path]
        elif self.preview:
            chosen = applicable[0].name
        else:
            previews: dict[str, Preview] = {}
            failures: list[PlanningError] = []
            for m in applicable:
                try:
                    previews[m.name] = self._preview(task, m, path, namespace)
                except PlanningError as exc:  # this method cannot apply here; the others may
                    failures.append(exc)
            if not previews:
                raise failures[0]
            if len(previews) == 1:
                chosen = next(iter(previews))
            else:
                point = ChoicePoint(path, task.name, tuple(previews))
                chosen = self.choose(point, previews)
            if chosen not in by_name:
                raise ValueError(f"chooser picked {chosen!r}, not one of {sorted(by_name)}")
        self.choices.append((point, chosen))
        return by_name[chosen]

    def _preview(
        self, task: Compound, method: Method, path: str, namespace: dict[str, Any]
    ) -> Preview:
        sub = _Run(self.owner, self.spec, self.choose, self.forced, preview=True)
        depth = int(namespace.get("depth", 0))
        sub._expand_method(task, method, path, namespace, depth, (task.name,), ())
        costs = {d.task_id: self.owner.estimate(d.primitive) for d in sub.drafts}
        deps = {d.task_id: d.deps for d in sub.drafts}
        duration = longest_path({k: v[0] for k, v in costs.items()}, deps)
        return Preview(method.name, duration, sum(v[1] for v in costs.values()), len(costs))

    def _expand_method(
        self,
        task: Compound,
        method: Method,
        path: str,
        namespace: dict[str, Any],
        depth: int,
        chain: tuple[str, ...],
        tag: tuple[str, ...],
    ) -> _Fragment:
        steps = {step.id: step for step in method.steps}
        fragments: dict[str, _Fragment] = {}
        where = f"{task.source}: {task.name}/{method.name}"
        for step in method.steps:
            fragments[step.id] = self._expand_step(
                step, path, namespace, depth, chain, tag, f"{where}/{step.id}"
            )
        by_id = self.by_id

        def exits(step_id: str, visiting: frozenset[str]) -> list[str]:
            found = fragments[step_id].exits
            if found or step_id in visiting:
                return found
            inner = visiting | {step_id}
            return [e for dep in steps[step_id].after if dep in steps for e in exits(dep, inner)]

        entries: list[str] = []
        for step in method.steps:
            targets: list[str] = []
            for dep in step.after:
                if dep in steps:
                    found = fragments[dep].exits  # the common case, without exits()'s set
                    targets.extend(found or exits(dep, frozenset({step.id})))
                else:
                    targets.append(_join(path, dep))  # reported as a missing dependency
            for entry in fragments[step.id].entries:
                by_id[entry].deps.extend(t for t in dict.fromkeys(targets) if t != entry)
            if not targets:
                entries.extend(fragments[step.id].entries)
        named = {dep for step in method.steps for dep in step.after}
        sinks = [e for s in method.steps if s.id not in named for e in exits(s.id, frozenset())]
        return _Fragment(entries, list(dict.fromkeys(sinks)))

    def _expand_step(
        self,
        step: Step,
        path: str,
        namespace: dict[str, Any],
        depth: int,
        chain: tuple[str, ...],
        tag: tuple[str, ...],
        where: str,
    ) -> _Fragment:
        try:
            if step.for_each is None:
                instances: list[tuple[str, dict[str, Any]]] = [(step.id, namespace)]
            else:
                items = substitute(step.for_each, namespace, where)
                if not isinstance(items, list):
                    raise PlanTemplateError(f"{where}: for_each must give a list, got {items!r}")
                instances = [
                    (f"{step.id}[{i}]", {**namespace, "item": item, "index": i})
                    for i, item in enumerate(items)
                ]
            fragment = _Fragment()
            for step_id, scope in instances:
                if step.when and not all(c.holds(scope) for c in step.when):
                    continue
                params = substitute(dict(step.params), scope, where) if step.params else {}
                child = {**scope, "params": params, "depth": depth + 1}
                sub = self.expand(
                    step.task, _join(path, step_id), child, depth + 1, (*chain, step.task), tag
                )
                fragment.entries.extend(sub.entries)
                fragment.exits.extend(sub.exits)
        except PlanTemplateError as exc:
            raise PlanningError("template", str(exc)) from exc
        return fragment


def _join(path: str, step_id: str) -> str:
    return f"{path}/{step_id}" if path else step_id
