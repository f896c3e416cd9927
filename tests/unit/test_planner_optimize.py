"""Critical path, slack, schedules under a parallelism cap, optimisation and resource estimates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.errors import PlanningError
from mesh.events import Constraint, ExecutionPlan, Producer, Resources, TaskRequest, TaskSpec, meta
from mesh.planner import Planner, PlannerConfig, estimate_resources, load_library, optimize_plan
from mesh.planner._graph import dependencies
from mesh.planner._optimize import transitive_reduction
from mesh.planner._schedule import Indexed, schedule

ME = Producer(component="test", instance="t-1")
NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def task(task_id: str, seconds: float, *deps: str, **fields: Any) -> TaskSpec:
    return TaskSpec(
        task_id=task_id,
        name=task_id,
        depends_on=deps,
        estimated_duration_seconds=seconds,
        **fields,
    )


def plan_of(*tasks: TaskSpec, limit: int | None = None) -> ExecutionPlan:
    return ExecutionPlan(plan_id="p", workflow_type="dag", tasks=tasks, max_parallelism=limit)


def request(task_type: str = "feature", **fields: Any) -> TaskRequest:
    request_id = fields.pop("request_id", "req-1")
    return TaskRequest(
        **meta(ME, correlation_id=request_id),
        request_id=request_id,
        task_type=task_type,
        description="Add a flag",
        **fields,
    )


def test_critical_path_and_slack_of_a_diamond() -> None:
    graph = Indexed.of(["a", "b", "c", "d"], {"b": ["a"], "c": ["a"], "d": ["b", "c"]})
    planned = schedule(graph, [10, 30, 5, 10])
    assert planned.makespan == 50
    assert planned.critical_path == ("a", "b", "d")
    assert planned.slack.tolist() == [0, 0, 25, 0]
    assert planned.peak_parallel == 2


def test_a_parallelism_cap_is_simulated_in_plan_order() -> None:
    """Three independent tasks on two slots: the long one started last ends last."""
    graph = Indexed.of(["s1", "s2", "long"], {})
    in_order = schedule(graph, [10, 10, 30], max_parallelism=2)
    assert in_order.makespan == 40
    assert in_order.critical_length == 30
    assert schedule(graph, [10, 10, 30], max_parallelism=2, priority=[1, 2, 0]).makespan == 30


def test_optimize_puts_critical_work_first_and_is_shorter_under_a_cap() -> None:
    plan = plan_of(task("s1", 10), task("s2", 10), task("long", 30), limit=2)
    planner = Planner()
    before = planner.estimate_resources(plan).makespan_seconds
    optimized = planner.optimize_plan(plan)
    assert before == 40
    assert [t.task_id for t in optimized.tasks] == ["long", "s1", "s2"]
    assert optimized.estimated_duration_seconds == 30


def test_optimize_drops_redundant_edges_only() -> None:
    plan = plan_of(task("a", 1), task("b", 1, "a"), task("c", 1, "a", "b"), task("d", 1, "a"))
    optimized = optimize_plan(plan)
    deps = {t.task_id: set(t.depends_on) for t in optimized.tasks}
    assert deps == {"a": set(), "b": {"a"}, "c": {"b"}, "d": {"a"}}


@st.composite
def plans(draw: st.DrawFn) -> ExecutionPlan:
    size = draw(st.integers(1, 25))
    tasks = []
    for i in range(size):
        deps = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        seconds = draw(st.floats(0, 1_000, allow_nan=False))
        tasks.append(task(f"t{i}", seconds, *(f"t{d}" for d in deps)))
    order = draw(st.permutations(tasks))
    limit = draw(st.one_of(st.none(), st.integers(1, 4)))
    return plan_of(*order, limit=limit)


@settings(max_examples=80, deadline=None)
@given(plans())
def test_optimize_plan_is_never_worse_and_keeps_every_ordering(plan: ExecutionPlan) -> None:
    planner = Planner(config=PlannerConfig(samples=0))
    optimized = planner.optimize_plan(plan)
    before = planner.estimate_resources(plan)
    after = planner.estimate_resources(optimized)
    assert after.makespan_seconds <= before.makespan_seconds + 1e-6
    assert after.total_cost == pytest.approx(before.total_cost)
    assert {t.task_id for t in optimized.tasks} == {t.task_id for t in plan.tasks}

    def closure(p: ExecutionPlan) -> set[tuple[str, str]]:
        graph = nx.DiGraph([(d, t) for t, ds in dependencies(p.tasks).items() for d in ds])
        graph.add_nodes_from(t.task_id for t in p.tasks)
        return set(nx.transitive_closure_dag(graph).edges)

    assert closure(optimized) == closure(plan)


def test_transitive_reduction_matches_networkx() -> None:
    graph = nx.gnp_random_graph(60, 0.15, seed=7, directed=True)
    dag = nx.DiGraph([(u, v) for u, v in graph.edges if u < v])
    dag.add_nodes_from(range(60))
    ids = [str(i) for i in range(60)]
    indexed = Indexed.of(ids, {str(v): [str(u) for u in dag.predecessors(v)] for v in dag})
    reduced = transitive_reduction(indexed)
    ours = {(ids[p], ids[s]) for s, preds in enumerate(reduced) for p in preds}
    theirs = {(str(u), str(v)) for u, v in nx.transitive_reduction(dag).edges}
    assert ours == theirs


def test_estimate_resources_peaks_totals_and_cost() -> None:
    plan = plan_of(
        task("a", 10, resources=Resources(cpu=1, memory_mb=100), estimated_cost=0.5),
        task("b", 20, "a", resources=Resources(cpu=2, memory_mb=300), estimated_cost=1.0),
        task("c", 5, "a", resources=Resources(cpu=1, gpu=1), estimated_cost=0.25),
    )
    estimate = estimate_resources(plan)
    assert estimate.makespan_seconds == 30
    assert estimate.peak == Resources(cpu=3, memory_mb=300, gpu=1)
    assert estimate.resource_seconds["cpu"] == 10 * 1 + 20 * 2 + 5 * 1
    assert estimate.total_cost == pytest.approx(1.75)
    assert estimate.schedule["b"] == (10, 30)
    assert estimate.makespan_p10_seconds < 30 < estimate.makespan_p90_seconds


def test_an_impossible_deadline_is_rejected_with_the_numbers() -> None:
    planner = Planner()
    with pytest.raises(PlanningError) as caught:
        planner.plan_task(request(deadline=NOW + timedelta(minutes=10)), now=NOW)
    error = caught.value
    assert error.kind == "deadline"
    assert "10m 00s away" in error.reason
    assert "critical path needs" in error.reason
    assert error.fields["remaining_seconds"] == 600
    assert error.fields["needed_seconds"] > 600


def test_a_tight_deadline_takes_the_faster_method() -> None:
    """feature/design_first needs 34 min, test_first 27 min: 30 min leaves only test_first."""
    planner = Planner()
    seen = set()
    for i in range(20):
        plan = planner.plan_task(
            request(request_id=f"r{i}", deadline=NOW + timedelta(minutes=30)), now=NOW
        )
        seen.add(plan.estimated_duration_seconds)
    assert seen == {27 * 60}


def test_a_deadline_in_the_past_is_rejected() -> None:
    with pytest.raises(PlanningError, match="passed 1m 00s ago"):
        Planner().plan_task(request(deadline=NOW - timedelta(minutes=1)), now=NOW)


def test_a_budget_below_every_decomposition_is_rejected() -> None:
    with pytest.raises(PlanningError) as caught:
        Planner().plan_task(request(constraints=[Constraint(name="max_cost", value=0.1)]))
    assert caught.value.kind == "budget"
    assert "exceeds the request's max_cost 0.1" in caught.value.reason


def test_a_budget_picks_the_cheaper_method() -> None:
    planner = Planner()
    for i in range(10):
        plan = planner.plan_task(
            request(request_id=f"b{i}", constraints=[Constraint(name="budget", value=0.40)])
        )
        assert plan.estimated_cost is not None
        assert plan.estimated_cost <= 0.40


def _observe(planner: Planner, compound: str, method: str, successes: int, failures: int) -> None:
    for i in range(successes + failures):
        planner.learning.bandit.observe(compound, method, i < successes)


def test_cost_breaks_ties_within_the_bandits_uncertainty(tmp_path: Path) -> None:
    """`side` is off the critical path, so its slower, cheaper method lengthens nothing: it is
    taken unless the bandit's draw makes it clearly less reliable; with evidence that the dear
    method is more reliable, the dear one wins."""
    (tmp_path / "t.yaml").write_text(
        """
tasks:
  job:
    methods:
      - name: only
        steps:
          - {id: long, task: long_work}
          - {id: side, task: side}
  side:
    methods:
      - {name: fast_dear, steps: [{id: work, task: dear_work}]}
      - {name: slow_cheap, steps: [{id: work, task: cheap_work}]}
  long_work: {capabilities: [code], duration: 600}
  dear_work: {capabilities: [code], duration: 60, cost: 2.0}
  cheap_work: {capabilities: [code], duration: 120, cost: 1.0}
"""
    )
    planner = Planner(load_library([tmp_path]), config=PlannerConfig(cache_size=0))

    def cheap_share(n: int = 300) -> float:
        plans = [planner.plan_task(request("job", request_id=f"j{i}")) for i in range(n)]
        assert {p.estimated_duration_seconds for p in plans} == {600}
        return sum(p.estimated_cost == 1.0 for p in plans) / n

    cold = cheap_share()
    # By duration alone the bandit would favour fast_dear (θ/60 vs θ/120): cost overrides that
    # in ~60 % of draws, and the dear method is still explored.
    assert 0.5 < cold < 0.75
    _observe(planner, "side", "fast_dear", 95, 5)
    _observe(planner, "side", "slow_cheap", 60, 40)
    assert cheap_share() < 0.05
    _observe(planner, "side", "slow_cheap", 300, 0)  # now both are reliable: cost decides
    assert cheap_share() > 0.95


def test_resource_limits_lower_the_parallelism() -> None:
    planner = Planner()
    req = request(
        "data_pipeline",
        context={"sources": ["a", "b", "c", "d", "e", "f"]},
        constraints=[Constraint(name="max_network_mbps", value=100)],
    )
    report = planner.report(req)
    assert report.plan.max_parallelism == 2  # extract uses 50 Mbit/s each
    assert report.estimate.peak.network_mbps <= 100
    assert any("max_parallelism set to 2" in w for w in report.warnings)


def test_a_task_larger_than_a_resource_limit_is_rejected() -> None:
    with pytest.raises(PlanningError) as caught:
        Planner().plan_task(request(constraints=[Constraint(name="max_cpu", value=1)]))
    assert caught.value.kind == "resources"
    assert "needs 2 cpu, over the request's max_cpu of 1" in caught.value.reason
