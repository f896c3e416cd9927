"""The workflow decider: ``decide(state, input, ctx) -> history events``; pure, no I/O.

What each input does (the state after it is what ``evolve`` folds from the returned events):

- PlanCreated → WorkflowStarted (carrying the plan) + TaskScheduled (attempt 1) for every task
  free to start, up to ``max_parallelism``. For an existing workflow: [] (a redelivery). A plan
  whose dependencies form a cycle: DecisionError.
- TaskAssigned / TaskStarted / TaskCompleted / TaskFailed / TaskReassigned about the task's
  current attempt → the input itself, re-recorded with its ``sequence`` (same event id and
  causation), then its consequences: dependants that became free are scheduled, a failure is
  retried or hits the failure policy (``_failures``), the workflow ends when nothing is left.
  TaskReassigned (the agent died) puts the task back to ``pending`` and schedules a new attempt
  at once; that attempt does not count against the retry policy. Reports about an older
  attempt, reports that repeat what is known (a second TaskStarted, a TaskAssigned after the
  start), and reports after the task or workflow ended are [] (idempotent). A report about an
  attempt never scheduled, or about a task not in the plan: DecisionError.
- TaskWaiting (why dispatch holds the current attempt back: no capable or healthy agent, an open
  breaker, resources queued; or that it placed it elsewhere) → the input re-recorded while the
  attempt waits (``ready``; a ``placed_elsewhere`` note also once it is out) and the workflow
  has not ended, unless the same note (kind, placed, reason) was already recorded for the
  attempt; else []. It only notes why (``waiting_reason``): the
  attempt's status, timers and outcome are untouched.
- TaskProgress → [] (not recorded; DecisionError only if the task is not in the plan).
- PauseWorkflow → WorkflowPaused if running, else []. While paused nothing is scheduled; results
  are still recorded, deadlines and trigger waits still fire, retries that come due wait.
- ResumeWorkflow → WorkflowResumed + TaskScheduled for what may start, if paused, else [].
- CancelWorkflow → TaskCancelled for every unfinished task (with the attempt if one was out,
  so ``dispatches`` sends its agent a CancelTask) + WorkflowCancelled; [] if already ended.
- RetryTask of a task that failed for good or timed out → the command re-recorded (folding it
  reopens the task and, if the workflow had failed, the workflow and the tasks its failure had
  cancelled or skipped: see ``_transitions``), then TaskScheduled for the task (or, for a task
  whose trigger never came, a fresh wait for it). The policy is not consulted: the operator asked.
  [] if the task is not failed or the workflow completed or was cancelled.
- ExternalEvent → re-recorded if some pending task waits for an event of that name (its payload
  becomes the task's ``event`` input) and those tasks are scheduled once free; else [].
- Tick → the timers due at ``tick.now`` (``_timers``); [] if none is.

New events are stamped ``meta(ctx.producer, causation=input, occurred_at=ctx.now,
event_id=ctx.new_id())``; a Tick has no causing event, so its events carry the workflow's
correlation id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from mesh.errors import DecisionError
from mesh.events import (
    CancelWorkflow,
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
    TaskReassigned,
    TaskStarted,
    TaskWaiting,
    WorkflowEvent,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
    uuid7,
)
from mesh.workflows._decision import Decision, one_line
from mesh.workflows._dispatch import dispatches
from mesh.workflows._failures import after_failure, end_all, finish_if_done
from mesh.workflows._graph import graph_of
from mesh.workflows._replay import evolve, fold
from mesh.workflows._scheduling import schedule
from mesh.workflows._state import (
    FAILED_STATUSES,
    IN_FLIGHT_STATUSES,
    TaskState,
    WorkflowState,
    wait_key,
)
from mesh.workflows._timers import any_due, fire_timers

__all__ = [
    "DecideContext",
    "DecisionError",
    "Tick",
    "WorkflowInput",
    "decide",
    "decide_and_fold",
    "dispatches",
    "evolve",
    "fold",
]


@dataclass(frozen=True)
class Tick:
    """Time passed: fire the workflow's due timers. Internal to the manager, never on the wire."""

    workflow_id: str
    now: datetime


WorkflowInput = (
    PlanCreated
    | TaskAssigned
    | TaskStarted
    | TaskProgress
    | TaskCompleted
    | TaskFailed
    | PauseWorkflow
    | ResumeWorkflow
    | CancelWorkflow
    | RetryTask
    | ExternalEvent
    | TaskReassigned
    | TaskWaiting
    | Tick
)
"""Everything ``decide`` accepts."""


@dataclass(frozen=True)
class DecideContext:
    """What a decision may know of the world: the time, who records, and where ids come from."""

    now: datetime
    producer: Producer
    new_id: Callable[[], UUID] = field(default=uuid7)


_RESULT_FROM: dict[type[WorkflowEvent], frozenset[str]] = {
    TaskAssigned: frozenset({"ready"}),
    TaskStarted: frozenset({"ready", "assigned"}),  # TaskAssigned may arrive after (or never)
    TaskCompleted: IN_FLIGHT_STATUSES,
    TaskFailed: IN_FLIGHT_STATUSES,
    TaskReassigned: IN_FLIGHT_STATUSES,
}
"""Task statuses in which a report about the current attempt still means something."""


def decide(
    state: WorkflowState | None, command: WorkflowInput, ctx: DecideContext
) -> list[WorkflowEvent]:
    """The history events to record for ``command``, with ``sequence`` set after ``state``'s.

    Returns [] for a duplicate or an input that changes nothing (see the module docstring);
    raises DecisionError for an input that cannot apply. Pure: the same state, input and
    context always give the same events.
    """
    decision = _decision(state, command, ctx)
    return decision.events if decision is not None else []


def decide_and_fold(
    state: WorkflowState | None, command: WorkflowInput, ctx: DecideContext
) -> tuple[list[WorkflowEvent], WorkflowState | None]:
    """:func:`decide`, and the state after its events: ``fold(events, state)``, which the
    decision has already computed while recording them (folding them again costs as much)."""
    decision = _decision(state, command, ctx)
    if decision is None or not decision.events:
        return [], state
    return decision.events, decision.state.freeze()


def _decision(
    state: WorkflowState | None, command: WorkflowInput, ctx: DecideContext
) -> Decision | None:
    if isinstance(command, PlanCreated):
        return _start(state, command, ctx)
    if state is None:
        kind = "tick" if isinstance(command, Tick) else command.type
        raise DecisionError(f"workflow {command.workflow_id} is unknown (got {kind})")
    if command.workflow_id != state.workflow_id:
        raise DecisionError(
            f"input for workflow {command.workflow_id} given the state of {state.workflow_id}"
        )
    if isinstance(command, Tick):
        return _tick(state, command, ctx)
    if isinstance(command, TaskProgress):
        _task(state, command.task_id)
        return None
    if isinstance(command, _RESULTS):
        return _result(state, command, ctx)
    if isinstance(command, TaskWaiting):
        return _waiting(state, command, ctx)
    if isinstance(command, RetryTask):
        return _retry(state, command, ctx)
    if state.is_final:
        return None  # a control command or event for a finished workflow changes nothing
    return _control(state, command, ctx)


def _start(
    state: WorkflowState | None, command: PlanCreated, ctx: DecideContext
) -> Decision | None:
    if state is not None:
        if state.workflow_id != command.workflow_id:
            raise DecisionError(
                f"plan for workflow {command.workflow_id} given the state of {state.workflow_id}"
            )
        return None  # the workflow exists: a redelivered or repeated plan
    if command.plan is None:  # the runtime fetches a plan by reference before deciding
        raise DecisionError(
            f"the plan of workflow {command.workflow_id} is by reference and was not fetched"
        )
    graph_of(command.plan)  # rejects a plan whose dependencies form a cycle
    decision = Decision(None, ctx, command)
    decision.record(
        WorkflowStarted(
            **decision.meta(),
            workflow_id=command.workflow_id,
            request_id=command.request_id,
            plan=command.plan,
            plan_ref=command.plan_ref,
        )
    )
    schedule(decision, retries=False)
    return decision


def _task(state: WorkflowState, task_id: str) -> TaskState:
    task = state.tasks.get(task_id)
    if task is None:
        raise DecisionError(f"task {task_id!r} is not in the plan of workflow {state.workflow_id}")
    return task


def _result(
    state: WorkflowState,
    command: TaskAssigned | TaskStarted | TaskCompleted | TaskFailed | TaskReassigned,
    ctx: DecideContext,
) -> Decision | None:
    task = _task(state, command.task_id)
    if command.attempt > task.attempt:
        raise DecisionError(
            f"{command.type} for attempt {command.attempt} of task {command.task_id!r}, which "
            f"has been scheduled only {task.attempt} time(s)"
        )
    if (
        state.is_final
        or command.attempt < task.attempt
        or task.status not in _RESULT_FROM[type(command)]
    ):
        return None  # stale attempt, duplicate, or a report after the task or workflow ended
    decision = Decision(state, ctx, command)
    if isinstance(command, TaskAssigned) and command.task is not None:
        # The plan holds the task: the history need not repeat it per attempt (it made every
        # assignment the largest event, and replay decode it).
        decision.record(command.model_copy(update={"task": None}))
    else:
        decision.record(command)
    capped = state.plan.max_parallelism is not None
    if isinstance(command, TaskCompleted):
        schedule(decision, retries=capped)
        finish_if_done(decision)
    elif isinstance(command, TaskFailed):
        after_failure(decision, command.task_id, retriable=command.retriable)
        schedule(decision, retries=capped)
    elif isinstance(command, TaskReassigned):
        schedule(decision, retries=capped)
    return decision


def _waiting(state: WorkflowState, command: TaskWaiting, ctx: DecideContext) -> Decision | None:
    task = _task(state, command.task_id)
    if command.attempt > task.attempt:
        raise DecisionError(
            f"{command.type} for attempt {command.attempt} of task {command.task_id!r}, which "
            f"has been scheduled only {task.attempt} time(s)"
        )
    key = wait_key(command.reason_kind, command.placed_elsewhere, command.reason)
    if (
        state.is_final
        or command.attempt < task.attempt
        or task.status not in IN_FLIGHT_STATUSES
        or (task.status != "ready" and not command.placed_elsewhere)
        or key in task.waits
    ):
        return None  # stale attempt, placed or ended since, or a note already recorded
    decision = Decision(state, ctx, command)
    decision.record(command)
    return decision


def _retry(state: WorkflowState, command: RetryTask, ctx: DecideContext) -> Decision | None:
    task = _task(state, command.task_id)
    if state.status in {"completed", "cancelled"} or task.status not in FAILED_STATUSES:
        return None  # nothing failed to retry, or the workflow was cancelled on purpose
    decision = Decision(state, ctx, command)
    decision.record(command)
    schedule(decision, retries=state.plan.max_parallelism is not None)
    return decision


def _control(
    state: WorkflowState,
    command: PauseWorkflow | ResumeWorkflow | CancelWorkflow | ExternalEvent,
    ctx: DecideContext,
) -> Decision | None:
    wid = state.workflow_id
    if isinstance(command, PauseWorkflow):
        if state.status != "running":
            return None
        decision = Decision(state, ctx, command)
        decision.record(WorkflowPaused(**decision.meta(), workflow_id=wid, reason=command.reason))
    elif isinstance(command, ResumeWorkflow):
        if state.status != "paused":
            return None
        decision = Decision(state, ctx, command)
        decision.record(WorkflowResumed(**decision.meta(), workflow_id=wid, reason=command.reason))
        schedule(decision, retries=True)
    elif isinstance(command, CancelWorkflow):
        decision = Decision(state, ctx, command)
        end_all(decision, one_line(command.reason), failed=None)
    else:
        graph = graph_of(state.plan)
        waiting = [
            t
            for t in graph.triggers.get(command.name, ())
            if state.tasks[t].status == "pending" and state.tasks[t].trigger_payload is None
        ]
        if not waiting:
            return None  # no task waits for it (any more): nothing to record
        decision = Decision(state, ctx, command)
        decision.record(command)
        schedule(decision, retries=False)
    return decision


def _tick(state: WorkflowState, command: Tick, ctx: DecideContext) -> Decision | None:
    if state.is_final or not any_due(state.timers, command.now):
        return None
    decision = Decision(state, ctx, None)
    fire_timers(decision, command.now)
    return decision


_RESULTS = (TaskAssigned, TaskStarted, TaskCompleted, TaskFailed, TaskReassigned)
