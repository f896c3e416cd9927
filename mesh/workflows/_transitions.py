"""How each history event changes a workflow's state (used by :class:`Folding`).

Folding is strict about order: an event whose ``sequence`` is at or below the state's was already
folded and is skipped (a redelivered record); a gap, or an event that cannot apply in the state
it meets, is a DecisionError. Times come only from the events (``occurred_at``), never from a
clock, so a replay gives the same state.

A RetryTask for a task that failed for good (or timed out) reopens it as ``pending``; if the
workflow had failed it is ``running`` again. Then every ``cancelled`` or ``skipped`` task none
of whose dependencies is failed, timed out, cancelled or skipped (taken in dependency order, so
chains reopen together) is ``pending`` again: in a failed or running workflow those statuses only
ever come from another task's failure (a cancelled workflow is never reopened), so this revives
exactly what the retried failure had stopped. Tasks downstream of another failure stay skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mesh.errors import DecisionError
from mesh.events import (
    ExternalEvent,
    RetryTask,
    TaskAssigned,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskReassigned,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskStarted,
    TaskTimedOut,
    TaskWaiting,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
)
from mesh.workflows._state import (
    FAILED_STATUSES,
    IN_FLIGHT_STATUSES,
    TaskState,
    TaskStatus,
    WorkflowStatus,
    constructed,
    wait_key,
)

if TYPE_CHECKING:
    from mesh.workflows._folding import Folding

_ACTIVE: frozenset[WorkflowStatus] = frozenset({"running", "paused"})
_BLOCKING: frozenset[TaskStatus] = frozenset({"failed", "timed_out", "cancelled", "skipped"})
_REVIVABLE: frozenset[TaskStatus] = frozenset({"cancelled", "skipped"})

# Which task statuses each task event may apply to; anything else is a corrupt history.
_FROM: dict[type[WorkflowEvent], frozenset[TaskStatus]] = {
    TaskScheduled: frozenset({"pending", "retrying"}),
    TaskAssigned: frozenset({"ready"}),
    TaskStarted: frozenset({"ready", "assigned"}),
    TaskCompleted: IN_FLIGHT_STATUSES,
    TaskFailed: IN_FLIGHT_STATUSES | {"pending"},  # pending: its trigger never came
    TaskTimedOut: frozenset({"assigned", "running"}),
    TaskReassigned: IN_FLIGHT_STATUSES,
    TaskRetryScheduled: FAILED_STATUSES,
    TaskSkipped: frozenset({"pending"}),
    TaskCancelled: frozenset({"pending", "ready", "assigned", "running", "retrying"}),
    TaskWaiting: IN_FLIGHT_STATUSES,
}


_TASK_EVENTS = (
    TaskScheduled,
    TaskAssigned,
    TaskStarted,
    TaskCompleted,
    TaskFailed,
    TaskTimedOut,
    TaskRetryScheduled,
    TaskReassigned,
    TaskCancelled,
    TaskSkipped,
    TaskWaiting,
)

_PLACED = {"waiting_kind": None, "waiting_reason": None}
"""What every change of a task but a TaskWaiting does to its waiting reason: the attempt is no
longer waiting (it was assigned, ended, or replaced by a new attempt)."""


def changed(task: TaskState, changes: dict[str, Any]) -> TaskState:
    """``task.model_copy(update=changes)`` without pydantic's generic copy (a few times
    cheaper, and folding copies a task per event): the values come from validated events, and
    like ``model_copy`` nothing is validated again."""
    fields = task.__dict__.copy()
    fields.update(changes)
    return constructed(TaskState, fields, task.__pydantic_fields_set__ | changes.keys())


def apply(state: Folding, event: WorkflowEvent) -> None:
    """Fold one recorded history event (skipped if already folded)."""
    if event.workflow_id != state.workflow_id:
        raise DecisionError(
            f"{event.type} of workflow {event.workflow_id} cannot fold into workflow "
            f"{state.workflow_id}"
        )
    if event.sequence is None:
        raise DecisionError(f"{event.type} {event.event_id} has no sequence: not recorded")
    if event.sequence <= state.sequence:
        return  # already folded: a redelivered history record
    if event.sequence != state.sequence + 1:
        raise DecisionError(
            f"history of workflow {state.workflow_id} jumps from sequence {state.sequence} "
            f"to {event.sequence}"
        )
    _apply(state, event)
    state.sequence = event.sequence


def _apply(state: Folding, event: WorkflowEvent) -> None:
    at = event.occurred_at
    if isinstance(event, _TASK_EVENTS):
        task = _checked(state, event, event.task_id)
        _apply_task(state, event, task, at)
    elif isinstance(event, WorkflowPaused):
        _workflow(state, event, {"running"}, "paused", event.reason)
    elif isinstance(event, WorkflowResumed):
        _workflow(state, event, {"paused"}, "running", event.reason)
    elif isinstance(event, WorkflowCompleted):
        _workflow(state, event, _ACTIVE, "completed", "")
        state.ended_at = at
    elif isinstance(event, WorkflowFailed):
        _workflow(state, event, _ACTIVE, "failed", event.reason)
        state.ended_at, state.failed_task_ids = at, tuple(event.failed_task_ids)
    elif isinstance(event, WorkflowCancelled):
        _workflow(state, event, _ACTIVE, "cancelled", event.reason)
        state.ended_at = at
    elif isinstance(event, ExternalEvent):
        _external(state, event)
    elif isinstance(event, RetryTask):
        _retry(state, event)
    elif isinstance(event, WorkflowStarted):
        raise DecisionError(f"workflow {state.workflow_id} cannot start twice")
    else:
        raise DecisionError(f"{event.type} is not a workflow history event")


def _workflow(
    state: Folding,
    event: WorkflowEvent,
    allowed: Iterable[str],
    status: WorkflowStatus,
    reason: str,
) -> None:
    if state.status not in allowed:
        raise DecisionError(
            f"cannot fold {event.type} into workflow {state.workflow_id} in status {state.status}"
        )
    state.status, state.reason = status, reason


def _checked(state: Folding, event: WorkflowEvent, task_id: str) -> TaskState:
    task = state.task(task_id)
    attempt = getattr(event, "attempt", None)
    if isinstance(event, TaskScheduled | TaskRetryScheduled) or (
        isinstance(event, TaskFailed) and task.status == "pending"
    ):
        expected: int | None = task.attempt + 1  # an attempt to come
    elif isinstance(event, TaskCancelled | TaskSkipped):
        expected = attempt if attempt is None else task.attempt
    else:
        expected = task.attempt
    if task.status not in _FROM[type(event)] or attempt != expected:
        raise DecisionError(
            f"cannot fold {event.type} (attempt {attempt}) into task {task_id!r} of "
            f"workflow {state.workflow_id} in status {task.status} (attempt {task.attempt})"
        )
    return task


def _apply_task(state: Folding, event: WorkflowEvent, task: TaskState, at: datetime) -> None:
    if isinstance(event, TaskWaiting):
        _waiting(state, event, task, at)
        return
    if task.waiting_kind is not None or task.waiting_reason is not None:
        task = changed(task, _PLACED)
    timeout = state.graph.specs[task.task_id].timeout_seconds
    deadline = at + timedelta(seconds=timeout) if timeout is not None else None
    if isinstance(event, TaskScheduled):
        state.put(
            task,
            at,
            waits=(),
            status="ready",
            attempt=event.attempt,
            scheduled_at=at,
            agent_id=None,
            started_at=None,
            ended_at=None,
            retry_at=None,
            deadline=None,
            wait_deadline=None,
        )
    elif isinstance(event, TaskAssigned):
        state.put(task, at, status="assigned", agent_id=event.agent_id, deadline=deadline)
    elif isinstance(event, TaskStarted):
        state.put(
            task,
            at,
            status="running",
            agent_id=event.agent_id,
            started_at=at,
            deadline=deadline,
        )
    elif isinstance(event, TaskCompleted):
        state.put(
            task,
            at,
            status="succeeded",
            agent_id=event.agent_id,
            output=event.output,
            ended_at=at,
            deadline=None,
        )
        for dependant in state.graph.dependants[task.task_id]:
            waiting = state.tasks[dependant]
            state.put(waiting, at, deps_pending=waiting.deps_pending - 1)
    elif isinstance(event, TaskFailed):
        state.put(
            task,
            at,
            status="failed",
            attempt=event.attempt,
            failures=task.failures + 1,
            agent_id=event.agent_id or task.agent_id,
            error_kind=event.error_kind,
            error_message=event.message,
            ended_at=at,
            deadline=None,
            wait_deadline=None,
            **_kept_output(task, event),
        )
    elif isinstance(event, TaskTimedOut):
        state.put(
            task,
            at,
            status="timed_out",
            failures=task.failures + 1,
            error_kind="timeout",
            error_message=(
                f"attempt {event.attempt} exceeded its timeout of {event.timeout_seconds:g} s"
            ),
            ended_at=at,
            deadline=None,
        )
    elif isinstance(event, TaskRetryScheduled):
        state.put(task, at, status="retrying", retry_at=event.retry_at)
    elif isinstance(event, TaskReassigned):
        state.put(task, at, status="pending", agent_id=None, started_at=None, deadline=None)
    elif isinstance(event, TaskCancelled | TaskSkipped):
        state.put(
            task,
            at,
            status="cancelled" if isinstance(event, TaskCancelled) else "skipped",
            ended_at=at,
            retry_at=None,
            deadline=None,
            wait_deadline=None,
        )


def _kept_output(task: TaskState, event: TaskFailed) -> dict[str, Any]:
    """The change that keeps a failed attempt's output (none if it printed nothing)."""
    if not event.output:
        return {}
    return {"failed_outputs": {**task.failed_outputs, str(event.attempt): event.output}}


def _waiting(state: Folding, event: TaskWaiting, task: TaskState, at: datetime) -> None:
    """Note why an attempt waits (or was placed elsewhere); its status and timers stay as they
    are: a TaskWaiting never changes what becomes of the attempt."""
    key = wait_key(event.reason_kind, event.placed_elsewhere, event.reason)
    changes: dict[str, Any] = {"waits": (*task.waits, key)} if key not in task.waits else {}
    if not event.placed_elsewhere and task.status == "ready":
        changes.update(waiting_kind=event.reason_kind, waiting_reason=event.reason)
    if changes:
        state.put(task, at, **changes)


def _external(state: Folding, event: ExternalEvent) -> None:
    for task_id in state.graph.triggers.get(event.name, ()):
        task = state.tasks[task_id]
        if task.status == "pending" and task.trigger_payload is None:
            state.put(task, event.occurred_at, trigger_payload=event.payload, wait_deadline=None)


def _retry(state: Folding, event: RetryTask) -> None:
    task = state.task(event.task_id)
    if task.status not in FAILED_STATUSES or state.status not in {"running", "paused", "failed"}:
        raise DecisionError(
            f"cannot retry task {event.task_id!r} in status {task.status} of workflow "
            f"{state.workflow_id} in status {state.status}"
        )
    at = event.occurred_at
    reopened: dict[str, Any] = {"status": "pending", "ended_at": None, "retry_at": None}
    state.put(task, at, **reopened, agent_id=None, wait_deadline=None)
    if state.status == "failed":
        state.status, state.reason, state.failed_task_ids = "running", "", ()
        state.ended_at = None
    for task_id in state.graph.topo:
        other = state.tasks[task_id]
        if other.status in _REVIVABLE and not any(
            state.tasks[dep].status in _BLOCKING for dep in state.graph.deps[task_id]
        ):
            state.put(other, at, **reopened, agent_id=None, deadline=None)
