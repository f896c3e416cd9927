"""Task Planner at scale: decompose, validate and find the critical path of large random DAGs.

    python -m bench.bench_planner                      # 1,000 / 10,000 / 100,000 tasks
    python -m bench.bench_planner --sizes 1000 --json

Each DAG is random but fixed by ``--seed``: task i depends on up to ``--fan-in`` earlier tasks
drawn from the ``--window`` tasks before it, so the graph has long chains and wide stages like a
real fan-out/fan-in plan. Phases, each timed with its peak Python-heap memory (tracemalloc):

- decompose: HTN expansion of a one-method template whose steps are the DAG (parameter
  substitution, dependency wiring, one TaskSpec per task);
- validate: ``validate_plan``'s checks (duplicates, missing dependencies, cycles; one linear
  pass over task indices for a valid plan, networkx only to name an invalid one's problems) and
  the topological generations (stages);
- critical path: CPM (earliest/latest start, slack, critical path) plus a list schedule under
  ``max_parallelism=32``;
- plan_task: the whole API call a request pays (analysis, decomposition, validation, resource
  fit, optimisation, schedules, Monte Carlo band, the validated plan) for sizes a plan may hold
  (at most 10,000 tasks; a larger request is rejected as too large after its decomposition).

Times are the best of ``--repeat`` plain runs, with the cyclic garbage collector tuned as every
mesh service tunes it after start-up (``--default-gc``: CPython's defaults); peak memory comes from
one more run under tracemalloc (which slows Python several-fold, so timing it would overstate
the cost).

There is no Kafka on this path, so the baseline printed beside the figures is networkx itself:
``nx.dag_longest_path`` on the same graph (what a planner built on networkx alone would pay).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import networkx as nx
import numpy as np

from bench._common import max_rss_bytes, measure, progress, report
from mesh.cli._service import tune_gc
from mesh.events import Producer, TaskRequest, meta
from mesh.planner import Planner, PlannerConfig, analyse, validate_tasks
from mesh.planner._graph import dependencies, to_graph
from mesh.planner._htn import Decomposer, first_method
from mesh.planner._loader import load_library
from mesh.planner._schedule import Indexed, schedule
from mesh.planner._templates import Compound, Method, Primitive, Step, TemplateLibrary

ME = Producer(component="bench", instance="bench-1")
MIB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class Phase:
    """Seconds of a plain run and peak heap bytes of a traced one."""

    seconds: float
    peak_bytes: int
    value: Any


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Fewest seconds of ``repeat`` runs (the machine's other work only ever adds time)."""
    runs = []
    for _ in range(max(1, repeat)):
        began = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - began)
    return min(runs)


def phase(fn: Callable[[], T], repeat: int) -> Phase:
    seconds = best_of(fn, repeat)
    traced = measure(fn)
    return Phase(seconds, traced.peak_bytes, traced.value)


def random_dag(size: int, seed: int, fan_in: int, window: int) -> list[tuple[str, ...]]:
    """Dependencies (as step ids) of each of ``size`` steps, in topological order."""
    rng = np.random.default_rng(seed)
    deps: list[tuple[str, ...]] = []
    for i in range(size):
        if i == 0:
            deps.append(())
            continue
        low = max(0, i - window)
        count = int(rng.integers(0, min(fan_in, i - low) + 1))
        chosen = rng.choice(np.arange(low, i), size=count, replace=False) if count else ()
        deps.append(tuple(f"s{j}" for j in sorted(int(c) for c in chosen)))
    return deps


def library_for(deps: list[tuple[str, ...]]) -> TemplateLibrary:
    """The built-ins plus ``big``: one method whose steps are the DAG."""
    base = load_library()
    work = Primitive(
        name="bench_work",
        title="step ${params.i}",
        capabilities=(),
        inherit_capabilities=False,
        duration=60.0,
        cost=0.01,
        resources=base.tasks["implement"].resources,  # type: ignore[union-attr]
        timeout=None,
        retry=base.tasks["implement"].retry,  # type: ignore[union-attr]
        prompt="Do step ${params.i} of ${request.description}",
        command=("python3", "-c", "print('step')", "{prompt}"),
        inputs={},
    )
    steps = tuple(
        Step(id=f"s{i}", task="bench_work", after=d, params={"i": i}) for i, d in enumerate(deps)
    )
    big = Compound("big", (Method("only", steps),))
    tasks = {**base.tasks, "bench_work": work, "big": big}
    return TemplateLibrary(tasks, {"big": len(steps)})


def request(request_id: str, task_type: str = "big") -> TaskRequest:
    return TaskRequest(
        **meta(ME, correlation_id=request_id),
        request_id=request_id,
        task_type=task_type,
        description="a large generated plan",
    )


def bench_size(
    size: int, seed: int, fan_in: int, window: int, step: Callable[[str], None], repeat: int
) -> list[Any]:
    """One table row: the phases for a ``size``-task DAG (``step`` reports progress)."""
    step("generate")
    deps = random_dag(size, seed, fan_in, window)
    library = library_for(deps)
    spec = analyse(request(f"bench-{size}"))
    decomposer = Decomposer(library)

    step("decompose")
    decomposed = phase(lambda: decomposer.decompose(spec, first_method), repeat)
    tasks = decomposed.value.tasks

    step("validate")
    validated = phase(lambda: validate_tasks(tasks), repeat)
    assert validated.value.valid, validated.value.problems[:3]

    step("critical path")
    durations = np.random.default_rng(seed).lognormal(4.0, 0.6, size=len(tasks))

    def critical() -> tuple[float, float]:
        graph = Indexed.of([t.task_id for t in tasks], dependencies(tasks))
        free = schedule(graph, durations)
        capped = schedule(graph, durations, max_parallelism=32)
        return free.makespan, capped.makespan

    timed = phase(critical, repeat)

    step("baseline and plan_task")
    graph = to_graph(dependencies(tasks))
    weighted = _edge_weighted(graph, {t.task_id: d for t, d in zip(tasks, durations, strict=True)})
    began = time.perf_counter()
    longest = nx.dag_longest_path_length(weighted, weight="d")
    baseline = time.perf_counter() - began
    assert abs(longest - timed.value[0]) <= 1e-6 * longest  # same answer as networkx
    full_seconds: float | str = "over the 10,000-task plan limit"
    if size <= 10_000:
        planner = Planner(library, config=PlannerConfig(cache_size=0))
        full_seconds = best_of(lambda: planner.plan_task(request(f"full-{size}")), repeat)
    phases = (decomposed, validated, timed)
    return [
        size,
        graph.number_of_edges(),
        len(validated.value.stages),
        decomposed.seconds,
        validated.seconds,
        timed.seconds,
        sum(p.seconds for p in phases),
        max(p.peak_bytes for p in phases) / MIB,
        baseline,
        full_seconds,
    ]


def run(
    sizes: list[int],
    seed: int,
    fan_in: int,
    window: int,
    as_json: bool,
    repeat: int = 3,
    service_gc: bool = True,
) -> None:
    if service_gc:
        tune_gc()
    rows: list[list[Any]] = []
    with progress() as bar:
        job = bar.add_task("planner", total=len(sizes) * 5)
        for size in sizes:

            def step(what: str, size: int = size) -> None:
                if bar.tasks[0].description != "planner":
                    bar.advance(job)
                bar.update(job, description=f"{size:,} tasks: {what}")

            rows.append(bench_size(size, seed, fan_in, window, step, repeat))
            bar.advance(job)
            bar.update(job, description="planner")
    report(
        f"Task Planner on random DAGs (seed {seed}, fan-in <= {fan_in}, window {window}; "
        f"best of {repeat}, {'service' if service_gc else 'default'} GC; "
        f"peak RSS {max_rss_bytes() / MIB:,.0f} MiB)",
        [
            "tasks",
            "edges",
            "stages",
            "decompose s",
            "validate s",
            "crit. path s",
            "total s",
            "peak MiB",
            "nx baseline s",
            "plan_task s",
        ],
        rows,
        as_json=as_json,
    )


def _edge_weighted(graph: nx.DiGraph, durations: dict[str, float]) -> nx.DiGraph:
    """networkx weighs edges, not nodes: edge u→v carries v's duration, and a start node leads
    to every task with that task's, so the longest path length is the makespan."""
    weighted = nx.DiGraph()
    weighted.add_weighted_edges_from(((u, v, durations[v]) for u, v in graph.edges), weight="d")
    weighted.add_weighted_edges_from(((" start", t, d) for t, d in durations.items()), weight="d")
    return weighted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated sizes")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--fan-in", type=int, default=3, help="most dependencies per task")
    parser.add_argument("--window", type=int, default=200, help="how far back they reach")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; best one counts")
    parser.add_argument(
        "--default-gc", action="store_true", help="CPython's GC thresholds, not the services'"
    )
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    run(sizes, args.seed, args.fan_in, args.window, args.json, args.repeat, not args.default_gc)


if __name__ == "__main__":
    main()
