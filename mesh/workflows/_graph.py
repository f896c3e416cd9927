"""The dependency graph a plan implies, computed once per plan object and cached.

Which dependencies count depends on the workflow type:

- ``sequential``: task i depends on task i-1 in plan order, plus any ``depends_on`` it declares;
- ``parallel``: no dependencies at all (``depends_on`` is ignored);
- ``dag``: exactly ``depends_on``;
- ``event_driven``: ``depends_on``, and a task with a ``trigger`` also waits for an
  ExternalEvent of that name (triggers are ignored in the other types).

A cycle makes a plan unrunnable (no task of it could ever start), so it is a DecisionError.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from mesh.errors import DecisionError
from mesh.events import ExecutionPlan, TaskSpec


@dataclass(frozen=True)
class Graph:
    """Dependencies both ways, plan positions and trigger subscriptions of one plan."""

    specs: Mapping[str, TaskSpec]
    index: Mapping[str, int]
    """Task id → position in the plan (the scheduling order)."""
    deps: Mapping[str, tuple[str, ...]]
    dependants: Mapping[str, tuple[str, ...]]
    triggers: Mapping[str, tuple[str, ...]]
    """External event name → the tasks waiting for it (event-driven plans only)."""
    trigger: Mapping[str, str]
    """Task id → the external event it waits for (event-driven plans only)."""
    topo: tuple[str, ...]
    """Every task after all of its dependencies."""


_CACHE: dict[int, Graph] = {}


def graph_of(plan: ExecutionPlan) -> Graph:
    """The plan's graph; cached by identity while the plan object lives (states share it)."""
    graph = _CACHE.get(id(plan))
    if graph is None:
        graph = _build(plan)
        _CACHE[id(plan)] = graph
        # Drop the entry when the plan dies, before its id can be reused by another object.
        weakref.finalize(plan, _CACHE.pop, id(plan), None)
    return graph


def _effective_deps(plan: ExecutionPlan) -> dict[str, tuple[str, ...]]:
    kind = plan.workflow_type
    if kind == "parallel":
        return {task.task_id: () for task in plan.tasks}
    deps: dict[str, tuple[str, ...]] = {}
    previous: str | None = None
    for task in plan.tasks:
        declared = tuple(dict.fromkeys(task.depends_on))  # drop repeats, keep order
        if kind == "sequential" and previous is not None and previous not in declared:
            declared = (previous, *declared)
        deps[task.task_id] = declared
        previous = task.task_id
    return deps


def _build(plan: ExecutionPlan) -> Graph:
    deps = _effective_deps(plan)
    dependants: dict[str, list[str]] = {task_id: [] for task_id in deps}
    for task_id, needs in deps.items():
        for dep in needs:
            dependants[dep].append(task_id)
    topo = _topological(deps, dependants)
    trigger: dict[str, str] = {}
    triggers: dict[str, list[str]] = {}
    if plan.workflow_type == "event_driven":
        for task in plan.tasks:
            if task.trigger is not None:
                trigger[task.task_id] = task.trigger
                triggers.setdefault(task.trigger, []).append(task.task_id)
    return Graph(
        specs=MappingProxyType({task.task_id: task for task in plan.tasks}),
        index=MappingProxyType({task.task_id: i for i, task in enumerate(plan.tasks)}),
        deps=MappingProxyType(deps),
        dependants=MappingProxyType({k: tuple(v) for k, v in dependants.items()}),
        triggers=MappingProxyType({k: tuple(v) for k, v in triggers.items()}),
        trigger=MappingProxyType(trigger),
        topo=topo,
    )


def _topological(
    deps: Mapping[str, tuple[str, ...]], dependants: Mapping[str, list[str]]
) -> tuple[str, ...]:
    """Kahn's algorithm in plan order; DecisionError naming a task on a cycle if there is one."""
    waiting = {task_id: len(needs) for task_id, needs in deps.items()}
    queue = deque(task_id for task_id, count in waiting.items() if count == 0)
    order: list[str] = []
    while queue:
        task_id = queue.popleft()
        order.append(task_id)
        for dependant in dependants[task_id]:
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                queue.append(dependant)
    if len(order) < len(deps):
        stuck = next(task_id for task_id, count in waiting.items() if count > 0)
        raise DecisionError(
            f"the plan's dependencies form a cycle (task {stuck!r} can never start)"
        )
    return tuple(order)
