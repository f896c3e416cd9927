"""validate_plan names every structural problem, and stages follow the dependencies."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.events import Capability, CapabilityRequirement, ExecutionPlan, TaskSpec
from mesh.kafka.calls import to_json
from mesh.planner import AgentKinds, validate_plan, validate_tasks
from mesh.planner._graph import dependencies


def task(task_id: str, *deps: str, caps: Sequence[str] = ()) -> TaskSpec:
    return TaskSpec(
        task_id=task_id,
        name=task_id,
        depends_on=deps,
        capabilities=[CapabilityRequirement(name=c) for c in caps],
    )


def test_a_valid_dag_has_stages_in_dependency_order() -> None:
    result = validate_tasks([task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")])
    assert result.valid
    assert result.stages == (("a",), ("b", "c"), ("d",))


def test_a_cycle_is_named_member_by_member() -> None:
    result = validate_tasks([task("a"), task("b", "a", "d"), task("c", "b"), task("d", "c")])
    assert not result.valid
    cycle = next(p for p in result.problems if p.kind == "cycle")
    assert set(cycle.tasks) == {"b", "c", "d"}
    members = cycle.message.split(" → ")
    assert members[0] == members[-1]
    assert len(members) == 4


def test_a_cycle_is_spelt_from_its_first_task_in_plan_order() -> None:
    """The same text on every run (a set's order would change it with the hash seed)."""
    tasks = [task("x"), task("d", "c"), task("b", "x", "d"), task("c", "b")]
    cycle = next(p for p in validate_tasks(tasks).problems if p.kind == "cycle")
    assert cycle.message == "d → b → c → d"  # each task before the ones that wait on it


def test_a_self_dependency_is_a_cycle() -> None:
    tasks = [task("a", "a")]
    assert [p.kind for p in validate_tasks(tasks).problems] == ["cycle"]


def test_missing_dependency_and_what_waits_on_it() -> None:
    result = validate_tasks([task("a", "ghost"), task("b", "a"), task("c")])
    kinds = [p.kind for p in result.problems]
    assert kinds == ["missing_dependency", "unreachable"]
    assert "'a' depends on 'ghost', which is not in the plan" in result.problems[0].message
    assert result.problems[1].tasks == ("b",)


def test_duplicate_ids_come_first() -> None:
    result = validate_tasks([task("a"), task("a"), task("b", "x")])
    assert [p.kind for p in result.problems] == ["duplicate_id", "missing_dependency"]
    assert "used 2 times" in result.problems[0].message


def test_capabilities_no_agent_kind_offers() -> None:
    kinds: AgentKinds = {"command": ["shell"], "python": [Capability(name="echo", level=3)]}
    tasks = [
        task("a", caps=["shell"]),
        TaskSpec(
            task_id="b",
            name="b",
            depends_on=["a"],
            capabilities=[CapabilityRequirement(name="echo", min_level=5)],
        ),
        task("c", "b"),
    ]
    result = validate_tasks(tasks, agent_kinds=kinds)
    assert [p.kind for p in result.problems] == ["unknown_capability", "unreachable"]
    assert "'echo' (level >= 5)" in result.problems[0].message
    assert "offered: echo, shell" in result.problems[0].message
    assert validate_tasks(tasks).valid  # no registry given: capabilities are not judged


def test_sequential_and_parallel_plans_mean_what_the_workflow_manager_does() -> None:
    tasks = [task("a"), task("b"), task("c", "a")]
    assert dependencies(tasks, "sequential") == {"a": (), "b": ("a",), "c": ("b", "a")}
    assert dependencies(tasks, "parallel") == {"a": (), "b": (), "c": ()}
    plan = ExecutionPlan(plan_id="p", workflow_type="sequential", tasks=tasks)
    assert validate_plan(plan).stages == (("a",), ("b",), ("c",))


@st.composite
def dags(draw: st.DrawFn) -> list[TaskSpec]:
    size = draw(st.integers(1, 30))
    tasks = []
    for i in range(size):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=4)) if i else set()
        tasks.append(task(f"t{i}", *(f"t{d}" for d in sorted(deps))))
    return tasks


@settings(max_examples=60, deadline=None)
@given(dags())
def test_any_dag_validates_and_its_stages_respect_every_dependency(tasks: list[TaskSpec]) -> None:
    result = validate_tasks(tasks)
    assert result.valid
    stage_of = {t: i for i, stage in enumerate(result.stages) for t in stage}
    assert set(stage_of) == {t.task_id for t in tasks}
    for t in tasks:
        assert all(stage_of[d] < stage_of[t.task_id] for d in t.depends_on)


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_any_back_edge_is_reported_as_a_cycle(tasks: list[TaskSpec], data: st.DataObject) -> None:
    if len(tasks) < 2:
        return
    i = data.draw(st.integers(0, len(tasks) - 2))
    j = data.draw(st.integers(i + 1, len(tasks) - 1))
    # t_i -> ... ; make t_i wait on t_j as well, and t_j on t_i: a cycle for sure
    tasks[i] = task(f"t{i}", *tasks[i].depends_on, f"t{j}")
    tasks[j] = task(f"t{j}", *tasks[j].depends_on, f"t{i}")
    kinds = {p.kind for p in validate_tasks(tasks).problems}
    assert "cycle" in kinds


def test_a_validation_result_replies_with_problems_warnings_and_stages_only() -> None:
    """What the planner's API sends for validate_plan: nothing internal rides along."""
    reply = to_json(validate_tasks([task("a"), task("b", "a")]))
    assert reply == {"problems": [], "warnings": [], "stages": [["a"], ["b"]]}
