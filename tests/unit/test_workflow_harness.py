"""A driver for the workflow decider, shared by the workflow tests, and checks of the module.

``Flow`` plays the Workflow Manager's loop in memory: decide → record (fold) → dispatch, with a
clock the test moves. ``check_indexes`` recomputes the state's derived indexes from its facts.
The tests in this file pin the package's public names and its import direction.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import JsonValue

import mesh.workflows
from mesh.events import (
    CancelTask,
    CancelWorkflow,
    Event,
    ExecutionPlan,
    ExternalEvent,
    PauseWorkflow,
    PlanCreated,
    Producer,
    ResumeWorkflow,
    RetryTask,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskReady,
    TaskReassigned,
    TaskSpec,
    TaskStarted,
    TaskWaiting,
    WaitingReason,
    WorkflowEvent,
    meta,
)
from mesh.workflows import (
    DecideContext,
    TaskState,
    Tick,
    WorkflowInput,
    WorkflowState,
    decide,
    dispatches,
    fold,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
WM = Producer(component="workflow-manager", instance="wm-0")
AGENT = Producer(component="agent", instance="agent-1")
CLIENT = Producer(component="client", instance="cli-1")
MANAGER = Producer(component="agent-manager", instance="am-0")
REQUEST = "req-1"


JsonObject = dict[str, JsonValue]


def ids(start: int = 0) -> Callable[[], UUID]:
    """Deterministic, increasing UUIDv7s (so two decisions can be compared field by field)."""
    counter = itertools.count(start)

    def new_id() -> UUID:
        n = next(counter)
        return UUID(int=(1_700_000_000_000 << 80) | (0x7 << 76) | (0b10 << 62) | n)

    return new_id


def spec(task_id: str, *depends_on: str, **fields: Any) -> TaskSpec:
    """A task spec with a name and dependencies; any other field by keyword."""
    return TaskSpec(task_id=task_id, name=task_id.upper(), depends_on=depends_on, **fields)


def plan(*tasks: TaskSpec, kind: str = "dag", **fields: Any) -> ExecutionPlan:
    return ExecutionPlan(plan_id="plan-1", workflow_type=kind, tasks=tasks, **fields)  # type: ignore[arg-type]


class Flow:
    """One workflow driven through decide, fold and dispatches, as the manager's loop does."""

    def __init__(self, the_plan: ExecutionPlan, *, workflow_id: str = "wf-1") -> None:
        self.workflow_id = workflow_id
        self.now = T0
        self.new_id = ids()
        self.state: WorkflowState | None = None
        self.history: list[WorkflowEvent] = []
        self.states: list[WorkflowState] = []
        self.sent: list[Event] = []
        self.plan = the_plan
        self.created = PlanCreated(
            **meta(CLIENT, correlation_id=REQUEST, occurred_at=self.now),
            workflow_id=workflow_id,
            request_id=REQUEST,
            plan=the_plan,
        )
        self.last = self.run(self.created)

    # -- the loop

    def ctx(self) -> DecideContext:
        return DecideContext(now=self.now, producer=WM, new_id=self.new_id)

    def run(self, command: WorkflowInput) -> list[WorkflowEvent]:
        """Decide, record, dispatch; returns the events recorded."""
        ctx = self.ctx()
        events = decide(self.state, command, ctx)
        if events:
            state = fold(events, self.state)
            assert state is not None
            self.state = state
            self.history.extend(events)
            self.states.append(state)
            self.sent.extend(dispatches(state, events, ctx))
        self.last = events
        return events

    @property
    def s(self) -> WorkflowState:
        assert self.state is not None
        return self.state

    def workflow_status(self) -> str:
        """The workflow's status (a method, so mypy does not narrow it across inputs)."""
        return self.s.status

    def task(self, task_id: str) -> TaskState:
        return self.s.tasks[task_id]

    def status(self, task_id: str) -> str:
        return self.s.tasks[task_id].status

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # -- inputs

    def _result_meta(self) -> Any:
        return meta(AGENT, correlation_id=REQUEST, occurred_at=self.now)

    def _attempt(self, task_id: str, attempt: int | None) -> int:
        return self.task(task_id).attempt if attempt is None else attempt

    def assign(
        self, task_id: str, agent: str = "agent-1", attempt: int | None = None
    ) -> list[WorkflowEvent]:
        return self.run(self.assigned(task_id, agent, attempt))

    def assigned(
        self, task_id: str, agent: str = "agent-1", attempt: int | None = None
    ) -> TaskAssigned:
        return TaskAssigned(
            **meta(MANAGER, correlation_id=REQUEST, occurred_at=self.now),
            workflow_id=self.workflow_id,
            task_id=task_id,
            attempt=self._attempt(task_id, attempt),
            agent_id=agent,
            task=self.s.plan.task(task_id),
        )

    def start(
        self, task_id: str, agent: str = "agent-1", attempt: int | None = None
    ) -> list[WorkflowEvent]:
        return self.run(self.started(task_id, agent, attempt))

    def started(
        self, task_id: str, agent: str = "agent-1", attempt: int | None = None
    ) -> TaskStarted:
        return TaskStarted(
            **self._result_meta(),
            workflow_id=self.workflow_id,
            task_id=task_id,
            attempt=self._attempt(task_id, attempt),
            agent_id=agent,
        )

    def complete(
        self, task_id: str, output: JsonObject | None = None, attempt: int | None = None
    ) -> list[WorkflowEvent]:
        return self.run(self.completed(task_id, output, attempt))

    def completed(
        self, task_id: str, output: JsonObject | None = None, attempt: int | None = None
    ) -> TaskCompleted:
        return TaskCompleted(
            **self._result_meta(),
            workflow_id=self.workflow_id,
            task_id=task_id,
            attempt=self._attempt(task_id, attempt),
            agent_id="agent-1",
            output=output or {},
        )

    def fail(
        self,
        task_id: str,
        kind: str = "exit_code",
        *,
        retriable: bool = True,
        attempt: int | None = None,
    ) -> list[WorkflowEvent]:
        return self.run(self.failed(task_id, kind, retriable=retriable, attempt=attempt))

    def failed(
        self,
        task_id: str,
        kind: str = "exit_code",
        *,
        retriable: bool = True,
        attempt: int | None = None,
    ) -> TaskFailed:
        return TaskFailed(
            **self._result_meta(),
            workflow_id=self.workflow_id,
            task_id=task_id,
            attempt=self._attempt(task_id, attempt),
            agent_id="agent-1",
            error_kind=kind,
            message=f"{task_id} went wrong",
            retriable=retriable,
        )

    def reassign(self, task_id: str, from_agent: str = "agent-1") -> list[WorkflowEvent]:
        return self.run(
            TaskReassigned(
                **meta(MANAGER, correlation_id=REQUEST, occurred_at=self.now),
                workflow_id=self.workflow_id,
                task_id=task_id,
                attempt=self.task(task_id).attempt,
                from_agent_id=from_agent,
                reason="heartbeat expired",
            )
        )

    def waiting(
        self,
        task_id: str,
        kind: WaitingReason = "no_capable_agent",
        reason: str = "no agent offers shell",
        *,
        placed_elsewhere: bool = False,
        attempt: int | None = None,
    ) -> TaskWaiting:
        return TaskWaiting(
            **meta(MANAGER, correlation_id=REQUEST, occurred_at=self.now),
            workflow_id=self.workflow_id,
            task_id=task_id,
            attempt=self._attempt(task_id, attempt),
            reason_kind=kind,
            reason=reason,
            placed_elsewhere=placed_elsewhere,
        )

    def wait(self, task_id: str, *args: Any, **kwargs: Any) -> list[WorkflowEvent]:
        return self.run(self.waiting(task_id, *args, **kwargs))

    def progress(self, task_id: str) -> list[WorkflowEvent]:
        return self.run(
            TaskProgress(
                **self._result_meta(),
                workflow_id=self.workflow_id,
                task_id=task_id,
                attempt=max(1, self.task(task_id).attempt),
                agent_id="agent-1",
                percent=50,
            )
        )

    def tick(self) -> list[WorkflowEvent]:
        return self.run(Tick(self.workflow_id, self.now))

    def _command_meta(self) -> Any:
        return meta(CLIENT, correlation_id=REQUEST, occurred_at=self.now)

    def pause(self) -> list[WorkflowEvent]:
        return self.run(PauseWorkflow(**self._command_meta(), workflow_id=self.workflow_id))

    def resume(self) -> list[WorkflowEvent]:
        return self.run(ResumeWorkflow(**self._command_meta(), workflow_id=self.workflow_id))

    def cancel(self, reason: str = "user asked") -> list[WorkflowEvent]:
        return self.run(
            CancelWorkflow(**self._command_meta(), workflow_id=self.workflow_id, reason=reason)
        )

    def retry(self, task_id: str) -> list[WorkflowEvent]:
        return self.run(
            RetryTask(**self._command_meta(), workflow_id=self.workflow_id, task_id=task_id)
        )

    def external(self, name: str, payload: JsonObject | None = None) -> list[WorkflowEvent]:
        return self.run(
            ExternalEvent(
                **self._command_meta(),
                workflow_id=self.workflow_id,
                name=name,
                payload=payload or {},
            )
        )

    # -- running tasks to the end

    def succeed(self, task_id: str, output: JsonObject | None = None) -> list[WorkflowEvent]:
        """Assign, start and complete the task's current attempt."""
        self.assign(task_id)
        self.start(task_id)
        return self.complete(task_id, output)

    # -- what happened

    def ready(self) -> list[TaskReady]:
        """Every TaskReady dispatched so far."""
        return [e for e in self.sent if isinstance(e, TaskReady)]

    def ready_ids(self) -> list[str]:
        return [e.task_id for e in self.ready()]

    def cancels(self) -> list[CancelTask]:
        return [e for e in self.sent if isinstance(e, CancelTask)]


def types(events: list[WorkflowEvent]) -> list[str]:
    """``type`` of each event, with the task id for task events (``task.scheduled:a``)."""
    out = []
    for event in events:
        task_id = getattr(event, "task_id", None)
        out.append(f"{event.type}:{task_id}" if task_id else event.type)
    return out


def effective_deps(the_plan: ExecutionPlan) -> dict[str, set[str]]:
    """Dependencies as the workflow type defines them, computed independently of the decider."""
    deps: dict[str, set[str]] = {}
    previous: str | None = None
    for task in the_plan.tasks:
        if the_plan.workflow_type == "parallel":
            deps[task.task_id] = set()
        else:
            deps[task.task_id] = set(task.depends_on)
            if the_plan.workflow_type == "sequential" and previous is not None:
                deps[task.task_id].add(previous)
        previous = task.task_id
    return deps


def check_indexes(state: WorkflowState) -> None:
    """The state's derived indexes agree with its facts (a recomputation from scratch)."""
    deps = effective_deps(state.plan)
    tasks = state.tasks
    event_driven = state.plan.workflow_type == "event_driven"
    runnable = []
    timers: dict[str, datetime] = {}
    for spec_ in state.plan.tasks:
        task = tasks[spec_.task_id]
        pending_deps = sum(tasks[d].status != "succeeded" for d in deps[spec_.task_id])
        assert task.deps_pending == pending_deps, (task.task_id, task.deps_pending, pending_deps)
        waits = event_driven and spec_.trigger is not None and task.trigger_payload is None
        if task.status == "pending" and pending_deps == 0 and not waits:
            runnable.append(task.task_id)
        timer = {
            "retrying": task.retry_at,
            "assigned": task.deadline,
            "running": task.deadline,
            "pending": task.wait_deadline,
        }.get(task.status)
        if timer is not None:
            timers[task.task_id] = timer
    assert list(state.runnable) == runnable
    assert state.timers == timers
    assert state.in_flight == sum(
        t.status in {"ready", "assigned", "running"} for t in tasks.values()
    )
    final = {"succeeded", "failed", "timed_out", "cancelled", "skipped"}
    assert state.unfinished == sum(t.status not in final for t in tasks.values())
    if state.status == "running" and state.plan.max_parallelism is not None:
        assert state.in_flight <= state.plan.max_parallelism


# -- tests of the package itself ---------------------------------------------------------------

_ALLOWED_ROOTS = {"pydantic", "pydantic_core"}
_ALLOWED_MESH = ("mesh.events", "mesh.errors", "mesh.workflows")


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_workflows_import_only_the_domain() -> None:
    """mesh.workflows is pure domain: stdlib, pydantic, mesh.events and mesh.errors only."""
    package = Path(mesh.workflows.__file__).parent
    bad = []
    for path in sorted(package.glob("*.py")):
        for module in _imports(path):
            root = module.split(".")[0]
            if root == "mesh":
                ok = any(module == m or module.startswith(m + ".") for m in _ALLOWED_MESH)
            else:
                ok = root in _ALLOWED_ROOTS or root in sys.stdlib_module_names
            if not ok:
                bad.append(f"{path.name}: {module}")
    assert bad == []


def test_public_names_are_pinned() -> None:
    """The package exports exactly the API the Workflow Manager runtime is written against (its
    error, DecisionError, lives in mesh.errors)."""

    def isort_key(name: str) -> tuple[int, str]:  # constants, classes, functions (RUF022)
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert mesh.workflows.__all__ == sorted(mesh.workflows.__all__, key=isort_key)
    assert set(mesh.workflows.__all__) == {
        "STATE_VERSION",
        "DecideContext",
        "Folding",
        "Recorded",
        "TaskState",
        "TaskStatus",
        "Tick",
        "WorkflowInput",
        "WorkflowState",
        "WorkflowStatus",
        "decide",
        "decide_and_fold",
        "dispatches",
        "evolve",
        "fold",
    }


def test_flow_records_a_gapless_history() -> None:
    """The driver itself: a one-task plan runs to completion with sequences 1..n."""
    flow = Flow(plan(spec("a")))
    flow.succeed("a")
    assert flow.workflow_status() == "completed"
    assert [e.sequence for e in flow.history] == list(range(1, len(flow.history) + 1))
