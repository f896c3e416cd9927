"""Bounded work per event: 10,000-task workflows run and fold without quadratic blow-up.

No wall-clock assertions: a quadratic path would take minutes and hit pytest's timeout.
"""

from __future__ import annotations

from mesh.events import ExecutionPlan, PlanCreated, TaskCompleted, TaskSpec, WorkflowEvent, meta
from mesh.workflows import DecideContext, WorkflowState, decide, dispatches, fold
from tests.unit.test_workflow_harness import AGENT, CLIENT, REQUEST, T0, WM, ids

N = 10_000


class Run:
    """A big workflow driven through decide, fold and dispatches, as live (no test extras)."""

    def __init__(self, plan: ExecutionPlan) -> None:
        self.ctx = DecideContext(now=T0, producer=WM, new_id=ids())
        created = PlanCreated(
            **meta(CLIENT, correlation_id=REQUEST), workflow_id="big", request_id=REQUEST, plan=plan
        )
        self.history: list[WorkflowEvent] = []
        self.state: WorkflowState | None = None
        self._record(decide(None, created, self.ctx))

    def _record(self, events: list[WorkflowEvent]) -> None:
        self.state = fold(events, self.state)
        assert self.state is not None
        dispatches(self.state, events, self.ctx)
        self.history.extend(events)

    def complete(self, task_id: str) -> None:
        done = TaskCompleted(
            **meta(AGENT, correlation_id=REQUEST, occurred_at=T0),
            workflow_id="big",
            task_id=task_id,
            attempt=1,
            agent_id="agent-1",
            output={"id": task_id},
        )
        self._record(decide(self.state, done, self.ctx))

    @property
    def s(self) -> WorkflowState:
        assert self.state is not None
        return self.state


def test_a_10k_sequential_plan_runs_and_folds() -> None:
    """A 10,000-step chain: each completion schedules the next; the history folds back."""
    tasks = [TaskSpec(task_id=f"t{i}", name="step", timeout_seconds=60) for i in range(N)]
    run = Run(ExecutionPlan(plan_id="seq", workflow_type="sequential", tasks=tasks))
    for i in range(N):
        run.complete(f"t{i}")
    assert run.s.status == "completed"
    assert len(run.history) == 2 * N + 2
    assert fold(run.history) == run.s


def test_a_10k_wide_plan_with_joins_runs_and_folds() -> None:
    """9,989 independent tasks, ten joins of up to 1,000, one final task: 10,000 in all."""
    leaves = [TaskSpec(task_id=f"t{i}", name="leaf") for i in range(N - 11)]
    joins = [
        TaskSpec(
            task_id=f"j{j}",
            name="join",
            depends_on=[leaf.task_id for leaf in leaves[j * 1000 : (j + 1) * 1000]],
        )
        for j in range(10)
    ]
    end = TaskSpec(task_id="end", name="end", depends_on=[join.task_id for join in joins])
    run = Run(ExecutionPlan(plan_id="wide", workflow_type="dag", tasks=[*leaves, *joins, end]))
    assert run.s.in_flight == N - 11
    for i in reversed(range(N - 11)):
        run.complete(f"t{i}")
    assert run.s.in_flight == 10
    for j in range(10):
        run.complete(f"j{j}")
    run.complete("end")
    assert run.s.status == "completed"
    assert fold(run.history) == run.s
    assert WorkflowState.from_snapshot_state(run.s.to_snapshot_state()) == run.s
