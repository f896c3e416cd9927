"""Critical path, slack and a simulated schedule under a parallelism limit.

The critical-path method (CPM) gives each task its earliest start and its slack (how long it may
slip without delaying the end); tasks with zero slack form the critical path. Under
``max_parallelism`` the Workflow Manager starts runnable tasks *in plan order* until the slots
are full, so the makespan it will achieve is simulated the same way (list scheduling with plan
order as priority), not assumed equal to the critical path. That is what lets ``optimize_plan``
shorten a plan by reordering it.

Indices, not ids, inside: these loops run over 100,000-task graphs in the benchmark.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Indexed:
    """A dependency graph over task indices, with a topological order."""

    ids: tuple[str, ...]
    preds: tuple[tuple[int, ...], ...]
    succs: tuple[tuple[int, ...], ...]
    topo: tuple[int, ...]

    @classmethod
    def of(cls, ids: Sequence[str], deps: Mapping[str, Sequence[str]]) -> Indexed:
        """Index ``deps`` (ValueError on a cycle; unknown dependencies are ignored)."""
        index = {task_id: i for i, task_id in enumerate(ids)}
        get = index.get
        pred_lists: list[tuple[int, ...]] = []
        for t in ids:
            found = [j for d in deps.get(t, ()) if (j := get(d)) is not None]
            pred_lists.append(tuple(dict.fromkeys(found)) if len(found) > 1 else tuple(found))
        preds = tuple(pred_lists)
        succ_lists: list[list[int]] = [[] for _ in ids]
        for i, ps in enumerate(preds):
            for p in ps:
                succ_lists[p].append(i)
        waiting = [len(ps) for ps in preds]
        topo = [i for i, n in enumerate(waiting) if n == 0]
        for i in topo:  # topo grows while we walk it (Kahn's algorithm)
            for s in succ_lists[i]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    topo.append(s)
        if len(topo) != len(ids):
            raise ValueError("the dependencies form a cycle")
        return cls(tuple(ids), preds, tuple(tuple(s) for s in succ_lists), tuple(topo))

    def reordered(
        self, order: Sequence[int], preds: Sequence[Sequence[int]] | None = None
    ) -> Indexed:
        """The graph with task ``order[k]`` at index ``k``, keeping only ``preds`` (by old index)
        if given: what ``Indexed.of`` would build from the reordered tasks, without the ids'
        dictionary or a second sort (the old topological order, renumbered, is still one, since
        ``preds`` may only drop edges)."""
        position = [0] * len(order)
        for k, i in enumerate(order):
            position[i] = k
        kept = self.preds if preds is None else preds
        new_preds = tuple(tuple(position[p] for p in kept[i]) for i in order)
        succ_lists: list[list[int]] = [[] for _ in order]
        for k, ps in enumerate(new_preds):
            for p in ps:
                succ_lists[p].append(k)
        return Indexed(
            tuple(self.ids[i] for i in order),
            new_preds,
            tuple(tuple(s) for s in succ_lists),
            tuple(position[i] for i in self.topo),
        )


@dataclass(frozen=True)
class Schedule:
    """When each task starts and finishes, the makespan, and the CPM critical path and slack."""

    ids: tuple[str, ...]
    start: Floats
    finish: Floats
    makespan: float
    critical_path: tuple[str, ...]
    critical_length: float
    slack: Floats
    latest_start: Floats
    max_parallelism: int | None
    peak_parallel: int

    def slack_of(self, task_id: str) -> float:
        return float(self.slack[self.ids.index(task_id)])


def schedule(
    graph: Indexed,
    durations: Sequence[float] | Floats,
    *,
    max_parallelism: int | None = None,
    priority: Sequence[int] | None = None,
) -> Schedule:
    """CPM over ``graph``; with ``max_parallelism``, the start times of a list schedule.

    ``priority``: position of each task in the dispatch order (default: index order, which is
    plan order); lower goes first among runnable tasks.
    """
    d = np.asarray(durations, dtype=np.float64)
    n = len(graph.ids)
    # The recursions run on Python floats (the same IEEE doubles): indexing numpy arrays one
    # element at a time boxes a scalar per read and costs several times more.
    dl: list[float] = d.tolist()
    early = [0.0] * n
    end = [0.0] * n
    preds, succs = graph.preds, graph.succs
    for i in graph.topo:
        ps = preds[i]
        start = max([end[p] for p in ps]) if ps else 0.0
        early[i] = start
        end[i] = start + dl[i]
    length = max(end) if n else 0.0
    late = [length] * n
    for i in reversed(graph.topo):
        ss = succs[i]
        if ss:
            late[i] = min([late[s] - dl[s] for s in ss])
    earliest = np.array(early, dtype=np.float64)
    finish = np.array(end, dtype=np.float64)
    latest_start = np.array(late, dtype=np.float64) - d
    slack = np.maximum(latest_start - earliest, 0.0)
    path = _critical_path(graph, earliest, finish, length)
    if max_parallelism is not None and max_parallelism < n:
        start_at, finish_at = _list_schedule(graph, d, max_parallelism, priority)
    else:
        start_at, finish_at = earliest, finish
    makespan = float(finish_at.max()) if n else 0.0
    return Schedule(
        ids=graph.ids,
        start=start_at,
        finish=finish_at,
        makespan=makespan,
        critical_path=tuple(graph.ids[i] for i in path),
        critical_length=length,
        slack=slack,
        latest_start=latest_start,
        max_parallelism=max_parallelism,
        peak_parallel=peak_concurrency(start_at, finish_at),
    )


def _critical_path(graph: Indexed, earliest: Floats, finish: Floats, length: float) -> list[int]:
    if not graph.ids:
        return []
    # Walk back from the task that ends last through the predecessor that finishes exactly when
    # it starts; ties go to the lowest index so the path is deterministic.
    current = int(np.argmax(finish))
    path = [current]
    while graph.preds[current]:
        start = earliest[current]
        tight = [p for p in graph.preds[current] if abs(finish[p] - start) <= 1e-9 * max(1, length)]
        if not tight:
            break
        current = min(tight)
        path.append(current)
    return path[::-1]


def _list_schedule(
    graph: Indexed, d: Floats, slots: int, priority: Sequence[int] | None
) -> tuple[Floats, Floats]:
    n = len(graph.ids)
    rank = list(priority) if priority is not None else list(range(n))
    waiting = [len(ps) for ps in graph.preds]
    ready = [(rank[i], i) for i in range(n) if waiting[i] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    dl: list[float] = d.tolist()
    start = [0.0] * n
    finish = [0.0] * n
    now = 0.0
    while ready or running:
        while ready and len(running) < slots:
            _, i = heapq.heappop(ready)
            start[i] = now
            finish[i] = now + dl[i]
            heapq.heappush(running, (finish[i], i))
        now, i = heapq.heappop(running)
        done = [i]
        while running and running[0][0] <= now:  # everything ending at the same instant
            done.append(heapq.heappop(running)[1])
        for j in done:
            for s in graph.succs[j]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    heapq.heappush(ready, (rank[s], s))
    return np.array(start, dtype=np.float64), np.array(finish, dtype=np.float64)


def peak_concurrency(start: Floats, finish: Floats) -> int:
    """Most tasks running at one instant (a task ending frees its slot for one starting then)."""
    if len(start) == 0:
        return 0
    times = np.concatenate([start, finish])
    steps = np.concatenate([np.ones(len(start)), -np.ones(len(finish))])
    order = np.lexsort((steps, times))  # at equal times, ends (-1) before starts (+1)
    return int(np.cumsum(steps[order]).max())


def makespan_samples(graph: Indexed, samples: Floats) -> Floats:
    """Unconstrained makespan for each row of ``samples`` (rows: draws, columns: tasks).

    One stage at a time: no task of a stage depends on another of it, so a stage's starts are
    a few element-wise maxima over all its tasks at once (the k-th predecessors of the tasks
    that have k or more), not a numpy call per task. Inside, a task's draws are one contiguous
    row, so gathering predecessors copies rows rather than striding through columns."""
    draws = np.ascontiguousarray(samples.T)
    finish = np.empty_like(draws)  # every row is written once, by its stage
    preds = graph.preds
    for stage in levels(graph):
        stage.sort(key=lambda i: -len(preds[i]))  # most predecessors first: prefixes below
        start = np.zeros((len(stage), draws.shape[1]))
        for k in range(len(preds[stage[0]])):
            kth = [preds[i][k] for i in stage if len(preds[i]) > k]  # for a prefix of the stage
            np.maximum(start[: len(kth)], finish[kth], out=start[: len(kth)])
        rows = np.array(stage, dtype=np.intp)
        finish[rows] = start + draws[rows]
    return finish.max(axis=0) if samples.shape[1] else np.zeros(samples.shape[0])


def levels(graph: Indexed) -> list[list[int]]:
    """Topological generations by index: level k holds the tasks whose longest chain of
    dependencies has k links, in index order."""
    level = [0] * len(graph.ids)
    preds = graph.preds
    for i in graph.topo:
        ps = preds[i]
        if ps:
            level[i] = max([level[p] for p in ps]) + 1
    found: list[list[int]] = [[] for _ in range(max(level, default=-1) + 1)]
    for i, k in enumerate(level):
        found[k].append(i)
    return found


def stages_of(graph: Indexed) -> tuple[tuple[str, ...], ...]:
    """Topological generations: stage k holds the tasks whose longest chain of dependencies
    has k links (each stage may run in parallel once the previous ones are done)."""
    ids = graph.ids
    return tuple(tuple(ids[i] for i in stage) for stage in levels(graph))


def longest_path(durations: Mapping[str, float], deps: Mapping[str, Sequence[str]]) -> float:
    """Critical-path length over the tasks given (outside dependencies and cycles ignored)."""
    inside = {t: [d for d in ds if d in durations] for t, ds in deps.items()}
    waiting = {t: len(ds) for t, ds in inside.items()}
    users: dict[str, list[str]] = {t: [] for t in durations}
    for task, ds in inside.items():
        for dep in ds:
            users[dep].append(task)
    finish: dict[str, float] = {}
    queue = deque(t for t, n in waiting.items() if n == 0)
    while queue:
        task = queue.popleft()
        start = max((finish[d] for d in inside[task]), default=0.0)
        finish[task] = start + durations[task]
        for user in users[task]:
            waiting[user] -= 1
            if waiting[user] == 0:
                queue.append(user)
    return max(finish.values(), default=0.0)
