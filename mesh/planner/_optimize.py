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
from dataclasses import dataclass
from typing import Any

import numpy as np

from mesh.events import ExecutionPlan, WorkflowType
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
        # s is implied if another direct successor already leads to s; no task leads to itself
        # (the graph is acyclic), so "another" may as well be "any": one union per task
        onward = 0
        for t in succs:
            onward |= reach[t]
        for s in succs:
            if (onward >> s) & 1:
                redundant.add((p, s))
    if not redundant:
        return graph.preds
    return tuple(
        tuple(p for p in preds if (p, s) not in redundant) for s, preds in enumerate(graph.preds)
    )


@dataclass(frozen=True)
class Optimized:
    """The optimised dispatch order as plain data; the caller makes the plan's models once."""

    order: Sequence[int]
    """Index (in the input) of the task at each position of the new order."""
    preds: Sequence[Sequence[int]] | None
    """Each task's dependencies to keep, by input index; None: keep them as they are."""
    graph: Indexed
    """The graph in the new order (what ``Indexed.of`` would build from the new plan)."""
    before: Schedule
    after: Schedule

    @classmethod
    def unchanged(cls, graph: Indexed, planned: Schedule) -> Optimized:
        return cls(range(len(graph.ids)), None, graph, planned, planned)


def optimize_order(
    graph: Indexed,
    durations: Sequence[float] | Floats,
    *,
    workflow_type: WorkflowType,
    max_parallelism: int | None,
) -> Optimized:
    """The order and edges that finish soonest, with the schedules before and after
    (``graph`` and ``durations`` in plan order)."""
    d = np.asarray(durations, dtype=np.float64)
    before = schedule(graph, d, max_parallelism=max_parallelism)
    if workflow_type == "sequential":
        return Optimized.unchanged(graph, before)  # order is the meaning of a sequential plan
    reduced = transitive_reduction(graph) if workflow_type != "parallel" else graph.preds
    topo_rank = np.empty(len(graph.ids), dtype=np.int64)
    topo_rank[list(graph.topo)] = np.arange(len(graph.ids))
    # by latest start, ties by topological rank (unique, so the order is total)
    order: list[int] = np.lexsort((topo_rank, before.latest_start)).tolist()
    new_graph = graph.reordered(order, reduced)
    after = schedule(new_graph, d[order], max_parallelism=max_parallelism)
    if after.makespan > before.makespan + _EPSILON * max(1.0, before.makespan):
        return Optimized.unchanged(graph, before)
    return Optimized(
        order, reduced if workflow_type != "parallel" else None, new_graph, before, after
    )
