"""Dependency resolution and validation: what makes a set of tasks unrunnable.

Every problem is found in one pass and named precisely, because a rejection is only useful if
it says what to fix: duplicate ids, dependencies on tasks that do not exist, cycles (each one
spelt out ``a → b → a``, from its first task in plan order), capabilities no known agent kind
offers, and the tasks that can never start because they wait on any of those ("unreachable").
A valid graph's topological generations are the plan's stages: the tasks of one stage may run
in parallel.

A valid plan is the common case and the one that must be fast (100,000 tasks): it is checked in
linear time over task indices, and ``task_graph`` hands on the index graph it builds (the
schedules and the optimiser use the same one). Only a plan with a problem goes through
networkx, to name it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from mesh.errors import PlanningError, RejectionKind
from mesh.events import Capability, CapabilityRequirement, TaskSpec, WorkflowType
from mesh.planner._schedule import Indexed, stages_of

AgentKinds = Mapping[str, Sequence[Capability | str]]
"""Agent kind → the capabilities it offers (e.g. ``{"shell": ["shell"], "demo": ["echo"]}``)."""

_ORDER: dict[RejectionKind, int] = {
    "duplicate_id": 0,
    "missing_dependency": 1,
    "cycle": 2,
    "unknown_capability": 3,
    "unreachable": 4,
}
_LIST_AT_MOST = 10


@dataclass(frozen=True)
class Problem:
    """One reason a plan cannot run, with the tasks it concerns."""

    kind: RejectionKind
    message: str
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidationResult:
    """What ``validate_plan`` found: problems (empty when valid), warnings, and the stages."""

    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()
    stages: tuple[tuple[str, ...], ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """PlanningError with the first (most fundamental) problem as reason, if any."""
        if self.problems:
            first = self.problems[0]
            raise PlanningError(first.kind, first.message, [p.message for p in self.problems])


def dependencies(
    tasks: Sequence[TaskSpec], workflow_type: WorkflowType = "dag"
) -> dict[str, tuple[str, ...]]:
    """Each task's dependencies as the Workflow Manager will honour them for ``workflow_type``."""
    if workflow_type == "parallel":
        return {t.task_id: () for t in tasks}
    deps = {t.task_id: tuple(t.depends_on) for t in tasks}
    if workflow_type == "sequential":
        for before, task in itertools.pairwise(tasks):
            if before.task_id not in deps[task.task_id]:
                deps[task.task_id] = (before.task_id, *deps[task.task_id])
    return deps


def to_graph(deps: Mapping[str, Sequence[str]]) -> nx.DiGraph:
    """A DiGraph with an edge dependency → dependant (dependencies on unknown ids left out)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(deps)
    graph.add_edges_from((d, t) for t, ds in deps.items() for d in ds if d in deps)
    return graph


def validate_tasks(
    tasks: Sequence[TaskSpec],
    *,
    workflow_type: WorkflowType = "dag",
    agent_kinds: AgentKinds | None = None,
) -> ValidationResult:
    """Every structural problem of ``tasks``; with ``agent_kinds``, also unmet capabilities."""
    deps = dependencies(tasks, workflow_type)
    offered = _offered(agent_kinds) if agent_kinds is not None else None
    graph = _valid_graph(tasks, deps, offered)
    if graph is not None:
        return ValidationResult(stages=stages_of(graph))
    return _problems(tasks, deps, workflow_type, offered)


def task_graph(
    tasks: Sequence[TaskSpec],
    *,
    workflow_type: WorkflowType = "dag",
    agent_kinds: AgentKinds | None = None,
) -> Indexed:
    """The index graph of ``tasks`` if ``validate_tasks`` finds them valid, else its
    PlanningError: what the planner builds on (the stages come after optimising)."""
    deps = dependencies(tasks, workflow_type)
    offered = _offered(agent_kinds) if agent_kinds is not None else None
    graph = _valid_graph(tasks, deps, offered)
    if graph is None:
        _problems(tasks, deps, workflow_type, offered).raise_for_problems()
        graph = Indexed.of([t.task_id for t in tasks], deps)  # not reached: a problem raised
    return graph


def _valid_graph(
    tasks: Sequence[TaskSpec],
    deps: Mapping[str, Sequence[str]],
    offered: list[Capability] | None,
) -> Indexed | None:
    """The index graph if ``tasks`` have no problem at all, else None (linear time)."""
    if len(deps) != len(tasks):
        return None  # a duplicate id
    for task_id, ds in deps.items():
        for dep in ds:
            if dep == task_id or dep not in deps:
                return None
    if offered is not None and not all(
        any(req.met_by(cap) for cap in offered) for task in tasks for req in task.capabilities
    ):
        return None
    try:
        return Indexed.of([t.task_id for t in tasks], deps)
    except ValueError:
        return None  # a cycle


def _problems(
    tasks: Sequence[TaskSpec],
    deps: Mapping[str, Sequence[str]],
    workflow_type: WorkflowType,
    offered: list[Capability] | None,
) -> ValidationResult:
    problems: list[Problem] = []
    counts = Counter(t.task_id for t in tasks)
    problems.extend(
        Problem("duplicate_id", f"task id {tid!r} is used {n} times", (tid,))
        for tid, n in counts.items()
        if n > 1
    )
    blocked: set[str] = set()
    for task in tasks:
        for dep in task.depends_on if workflow_type != "parallel" else ():
            if dep == task.task_id:
                problems.append(
                    Problem("cycle", f"{task.task_id} → {task.task_id} (depends on itself)", (dep,))
                )
                blocked.add(dep)
            elif dep not in deps:
                problems.append(
                    Problem(
                        "missing_dependency",
                        f"task {task.task_id!r} depends on {dep!r}, which is not in the plan",
                        (task.task_id, dep),
                    )
                )
                blocked.add(task.task_id)
    graph = to_graph(deps)
    graph.remove_edges_from(list(nx.selfloop_edges(graph)))
    order = {task_id: i for i, task_id in enumerate(deps)}
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        cycle = _cycle(graph, sorted(component, key=order.__getitem__))
        text = " → ".join([*cycle, cycle[0]])
        problems.append(Problem("cycle", text, tuple(cycle)))
        blocked.update(component)
    if offered is not None:
        for task in tasks:
            for req in task.capabilities:
                if not any(req.met_by(cap) for cap in offered):
                    known = ", ".join(sorted({c.name for c in offered})) or "none"
                    problems.append(
                        Problem(
                            "unknown_capability",
                            f"task {task.task_id!r} needs capability {_describe(req)}, which no "
                            f"known agent kind offers (offered: {known})",
                            (task.task_id,),
                        )
                    )
                    blocked.add(task.task_id)
    if blocked:
        waiting = set().union(*(nx.descendants(graph, b) for b in blocked)) - blocked
        if waiting:
            names = sorted(waiting)
            shown = ", ".join(names[:_LIST_AT_MOST]) + (" …" if len(names) > _LIST_AT_MOST else "")
            problems.append(
                Problem(
                    "unreachable",
                    f"{len(names)} task(s) can never start because they wait on a task above: "
                    f"{shown}",
                    tuple(names),
                )
            )
    problems.sort(key=lambda p: _ORDER.get(p.kind, 9))
    return ValidationResult(tuple(problems))


def _cycle(graph: nx.DiGraph, members: list[str]) -> list[str]:
    """A cycle through a strongly connected component, found the same way every run: a view
    of the component would walk it in set order, which changes with the hash seed."""
    inside = set(members)
    component = nx.DiGraph()
    component.add_edges_from((u, v) for u in members for v in graph.successors(u) if v in inside)
    return [u for u, _ in nx.find_cycle(component, source=members[0])]


def _offered(agent_kinds: AgentKinds) -> list[Capability]:
    return [
        Capability(name=c) if isinstance(c, str) else c
        for caps in agent_kinds.values()
        for c in caps
    ]


def _describe(req: CapabilityRequirement) -> str:
    extra = []
    if req.min_level is not None:
        extra.append(f"level >= {req.min_level}")
    if req.tags:
        extra.append("tags " + ", ".join(req.tags))
    return repr(req.name) + (f" ({'; '.join(extra)})" if extra else "")


def capability_names(tasks: Collection[TaskSpec]) -> set[str]:
    """Every capability name the tasks ask for."""
    return {c.name for t in tasks for c in t.capabilities}
