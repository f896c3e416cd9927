"""Plan optimisation: the same work, dispatched so that it finishes sooner, never later.

Two rewrites that keep every task and every ordering guarantee:

- **Redundant edges dropped** (transitive reduction): if ``c`` waits on ``b`` and ``b`` on ``a``,
  ``c``'s own dependency on ``a`` says nothing new; fewer edges make the plan easier to read and
  cheaper for the Workflow Manager to track.
- **Critical work first**: the Workflow Manager starts runnable tasks in plan order when
  ``max_parallelism`` caps the slots, so the plan is reordered by latest start time (the classic
  critical-path list-scheduling priority: the least room to slip goes first; ties keep the
  original order). Sorting by latest start is also a topological order, so the plan reads top
  to bottom.

Both schedules are simulated and the better one is kept, so the estimated makespan never gets
worse; without a parallelism cap it cannot change (it is the critical path either way). Method
choices (cheaper decompositions of equal length) are made where the request is still at hand:
``Planner.plan_task``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mesh.errors import PlanningError
from mesh.events import ExecutionPlan, TaskSpec
from mesh.planner._graph import dependencies
from mesh.planner._schedule import Floats, Indexed, Schedule, schedule

REDUCTION_LIMIT = 20_000
"""Above this many tasks the reduction's bitsets (n² bits) would cost too much memory; skip it."""

_EPSILON = 1e-9


def replace_plan(plan: ExecutionPlan, **changes: Any) -> ExecutionPlan:
    """A validated copy of ``plan`` with some fields changed."""
    fields = {name: getattr(plan, name) for name in ExecutionPlan.model_fields}
    return ExecutionPlan(**{**fields, **changes})


def transitive_reduction(graph: Indexed) -> tuple[tuple[int, ...], ...]:
    """Each task's predecessors minus those implied through another predecessor."""
    n = len(graph.ids)
    if n > REDUCTION_LIMIT:
        return graph.preds
    reach = [0] * n  # bitset of every task reachable from i (Python ints: fast, exact)
    for i in reversed(graph.topo):
        bits = 0
        for s in graph.succs[i]:
            bits |= reach[s] | (1 << s)
        reach[i] = bits
    redundant: set[tuple[int, int]] = set()
    for p in range(n):
        succs = graph.succs[p]
        if len(succs) < 2:
            continue
        for s in succs:
            # s is implied if another direct successor t already leads to s
            if any((reach[t] >> s) & 1 for t in succs if t != s):
                redundant.add((p, s))
    return tuple(
        tuple(p for p in preds if (p, s) not in redundant) for s, preds in enumerate(graph.preds)
    )


def optimize_tasks(
    plan: ExecutionPlan, durations: Sequence[float] | Floats
) -> tuple[ExecutionPlan, Schedule, Schedule]:
    """The optimised plan and the schedules before and after (durations in plan order)."""
    tasks = list(plan.tasks)
    deps = dependencies(tasks, plan.workflow_type)
    try:
        graph = Indexed.of([t.task_id for t in tasks], deps)
    except ValueError:
        raise PlanningError(
            "cycle", "the plan's dependencies form a cycle; validate_plan names it"
        ) from None
    d = np.asarray(durations, dtype=np.float64)
    limit = plan.max_parallelism
    before = schedule(graph, d, max_parallelism=limit)
    if plan.workflow_type == "sequential":
        return plan, before, before  # order is the meaning of a sequential plan
    reduced = transitive_reduction(graph) if plan.workflow_type != "parallel" else graph.preds
    topo_rank = np.empty(len(tasks), dtype=np.int64)
    topo_rank[list(graph.topo)] = np.arange(len(tasks))
    order = sorted(range(len(tasks)), key=lambda i: (before.latest_start[i], topo_rank[i]))
    new_tasks = [
        _with_deps(tasks[i], [graph.ids[p] for p in reduced[i]], plan.workflow_type) for i in order
    ]
    candidate = replace_plan(plan, tasks=new_tasks)
    new_graph = Indexed.of(
        [t.task_id for t in new_tasks], dependencies(new_tasks, plan.workflow_type)
    )
    after = schedule(new_graph, d[order], max_parallelism=limit)
    if after.makespan > before.makespan + _EPSILON * max(1.0, before.makespan):
        return plan, before, before
    return candidate, before, after


def _with_deps(task: TaskSpec, deps: list[str], workflow_type: str) -> TaskSpec:
    if workflow_type == "parallel" or list(task.depends_on) == deps:
        return task
    return task.model_copy(update={"depends_on": tuple(deps)})
