"""``estimate_resources``: what a plan needs at its busiest, for how long, and what it costs.

The plan is scheduled as the Workflow Manager will run it (plan order under ``max_parallelism``)
with the estimated durations; each resource's usage over time is then a step function, whose
peak is found with one sorted sweep in numpy. The makespan band (p10 to p90) comes from Monte Carlo
draws of every task's log-normal duration pushed through the critical-path recursion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mesh.events import Resources, TaskSpec
from mesh.planner._schedule import Floats, Indexed, Schedule, makespan_samples

RESOURCE_FIELDS = ("cpu", "memory_mb", "network_mbps", "storage_mb", "gpu")
MONTE_CARLO_LIMIT = 10_000
"""Plans with more tasks get no Monte Carlo band (it would cost more than the plan is worth)."""


@dataclass(frozen=True)
class ResourceEstimate:
    """Peaks, totals and timing of a plan, as scheduled with the planner's estimates."""

    makespan_seconds: float
    makespan_p10_seconds: float
    makespan_p90_seconds: float
    critical_path: tuple[str, ...]
    critical_path_seconds: float
    total_cost: float
    peak: Resources
    """Most of each resource in use at one instant."""
    resource_seconds: Mapping[str, float]
    """Each resource integrated over time (``cpu`` → CPU-seconds …)."""
    peak_parallel: int
    schedule: Mapping[str, tuple[float, float]]
    """Task id → (start, finish) seconds from the workflow's start."""


def resource_matrix(tasks: Sequence[TaskSpec]) -> NDArray[np.float64]:
    """Tasks by resources (columns in ``RESOURCE_FIELDS`` order)."""
    rows: dict[int, list[float]] = {}  # tasks of one template share its Resources object
    matrix = []
    for task in tasks:
        resources = task.resources
        row = rows.get(id(resources))
        if row is None:
            row = rows[id(resources)] = [float(getattr(resources, f)) for f in RESOURCE_FIELDS]
        matrix.append(row)
    return np.array(matrix, dtype=np.float64).reshape(len(tasks), len(RESOURCE_FIELDS))


def peaks(
    start: NDArray[np.float64], finish: NDArray[np.float64], usage: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per-column maximum of the summed usage over time (an ending task frees before a start)."""
    if len(start) == 0:
        return np.zeros(usage.shape[1])
    times = np.concatenate([start, finish])
    sign = np.concatenate([np.ones(len(start)), -np.ones(len(finish))])
    order = np.lexsort((sign, times))
    deltas = np.concatenate([usage, -usage])[order]
    peak: NDArray[np.float64] = np.maximum(np.cumsum(deltas, axis=0).max(axis=0), 0.0)
    return peak


def estimate_from_schedule(
    tasks: Sequence[TaskSpec],
    graph: Indexed,
    planned: Schedule,
    costs: Sequence[float] | Floats,
    log_mu: Sequence[float] | Floats,
    log_sigma: Sequence[float] | Floats,
    *,
    samples: int = 256,
    seed: int = 0,
) -> ResourceEstimate:
    """Assemble the estimate; ``log_mu``/``log_sigma`` drive the makespan band."""
    usage = resource_matrix(tasks)
    peak = peaks(planned.start, planned.finish, usage)
    busy = (planned.finish - planned.start)[:, None] * usage
    low = high = planned.makespan
    if 0 < len(tasks) <= MONTE_CARLO_LIMIT and samples > 0:
        rng = np.random.default_rng(seed)
        draws = rng.lognormal(
            np.asarray(log_mu, dtype=np.float64),
            np.asarray(log_sigma, dtype=np.float64),
            size=(samples, len(tasks)),
        )
        spans = makespan_samples(graph, draws)
        # Monte Carlo ignores the parallelism cap; shift the band by what the cap adds.
        extra = planned.makespan - planned.critical_length
        low, high = (float(q) + extra for q in np.quantile(spans, [0.1, 0.9]))
    return ResourceEstimate(
        makespan_seconds=planned.makespan,
        makespan_p10_seconds=low,
        makespan_p90_seconds=high,
        critical_path=planned.critical_path,
        critical_path_seconds=planned.critical_length,
        total_cost=float(np.sum(np.asarray(costs, dtype=np.float64))),
        peak=Resources(
            cpu=float(peak[0]),
            memory_mb=math.ceil(peak[1]),
            network_mbps=float(peak[2]),
            storage_mb=math.ceil(peak[3]),
            gpu=math.ceil(peak[4]),
        ),
        resource_seconds={
            f: float(v) for f, v in zip(RESOURCE_FIELDS, busy.sum(axis=0), strict=True)
        },
        peak_parallel=planned.peak_parallel,
        schedule=dict(
            zip(
                graph.ids,
                zip(planned.start.tolist(), planned.finish.tolist(), strict=True),
                strict=True,
            )
        ),
    )
