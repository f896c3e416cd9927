"""A mutable working copy of a workflow's state that history events are applied to in place.

Folding a history into frozen states one event at a time would copy every task per event; a
:class:`Folding` applies many events and freezes once, so folding is linear in the history and
a decision (which folds each event it records) touches only the tasks concerned. ``put`` is the
one place a task changes, and it keeps the state's indexes in step.
"""

from __future__ import annotations

from bisect import insort
from datetime import datetime, timedelta
from typing import Any

from mesh.errors import DecisionError
from mesh.events import WorkflowEvent, WorkflowStarted
from mesh.workflows import _transitions
from mesh.workflows._graph import Graph, graph_of
from mesh.workflows._state import (
    FINAL_TASK_STATUSES,
    FINAL_WORKFLOW_STATUSES,
    IN_FLIGHT_STATUSES,
    TaskState,
    WorkflowState,
    WorkflowStatus,
    constructed,
)
from mesh.workflows._table import TaskTable

_STATE_FIELDS = frozenset(WorkflowState.model_fields)
"""Every field of a state is set by ``freeze``."""


class Folding:
    """A mutable working copy of a workflow's state that events are applied to in place.

    It keeps the indexes of :class:`WorkflowState` in step with every task change (``put``), so
    the decider can read them while it builds a decision event by event.
    """

    def __init__(self, state: WorkflowState) -> None:
        self.graph: Graph = graph_of(state.plan)
        self.plan = state.plan
        self.workflow_id = state.workflow_id
        self.request_id = state.request_id
        self.correlation_id = state.correlation_id
        self.status: WorkflowStatus = state.status
        self.sequence = state.sequence
        self.started_at = state.started_at
        self.ended_at = state.ended_at
        self.reason = state.reason
        self.failed_task_ids = state.failed_task_ids
        self.tasks = TaskTable.of(state.tasks).edit()
        self.runnable = list(state.runnable)
        self._runnable = set(state.runnable)
        self.in_flight = state.in_flight
        self.unfinished = state.unfinished
        self.timers = dict(state.timers)

    @classmethod
    def started(cls, event: WorkflowStarted) -> Folding:
        """The state right after ``event``: every task pending, the free ones runnable."""
        if event.sequence != 1:
            raise DecisionError(
                f"workflow.started of workflow {event.workflow_id} has sequence "
                f"{event.sequence}; a history starts at 1"
            )
        plan = event.plan
        if plan is None:
            raise DecisionError(
                f"workflow.started of workflow {event.workflow_id} refers to its plan (payload "
                f"{event.plan_ref.payload_id if event.plan_ref else '?'}); fetch it before folding"
            )
        graph = graph_of(plan)
        tasks = {
            task_id: TaskState(task_id=task_id, deps_pending=len(graph.deps[task_id]))
            for task_id in graph.index
        }
        self = cls(
            WorkflowState.model_construct(
                workflow_id=event.workflow_id,
                request_id=event.request_id,
                correlation_id=event.correlation_id,
                status="running",
                plan=plan,
                tasks=TaskTable.of(tasks),
                sequence=1,
                started_at=event.occurred_at,
                ended_at=None,
                reason="",
                failed_task_ids=(),
                runnable=(),
                in_flight=0,
                unfinished=len(tasks),
                timers={},
            )
        )
        for task_id in graph.index:
            if self.tasks[task_id].deps_pending == 0:
                self.put(self.tasks[task_id], event.occurred_at, is_new=True)
        return self

    def freeze(self) -> WorkflowState:
        """The immutable state (no re-validation: every value came from validated events)."""
        return constructed(
            WorkflowState,
            {
                "workflow_id": self.workflow_id,
                "request_id": self.request_id,
                "correlation_id": self.correlation_id,
                "status": self.status,
                "plan": self.plan,
                "tasks": self.tasks.freeze(),
                "sequence": self.sequence,
                "started_at": self.started_at,
                "ended_at": self.ended_at,
                "reason": self.reason,
                "failed_task_ids": self.failed_task_ids,
                "runnable": tuple(self.runnable),
                "in_flight": self.in_flight,
                "unfinished": self.unfinished,
                "timers": dict(self.timers),
            },
            set(_STATE_FIELDS),
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_WORKFLOW_STATUSES

    def task(self, task_id: str) -> TaskState:
        """The task, or DecisionError if the plan has no such task."""
        try:
            return self.tasks[task_id]
        except KeyError:
            raise DecisionError(
                f"task {task_id!r} is not in the plan of workflow {self.workflow_id}"
            ) from None

    def apply(self, event: WorkflowEvent) -> None:
        """Fold one recorded history event (skipped if already folded)."""
        _transitions.apply(self, event)

    # -- the one place a task changes ----------------------------------------------------------

    def put(self, old: TaskState, at: datetime, *, is_new: bool = False, **changes: Any) -> None:
        """Store ``old`` with ``changes`` and bring the indexes in line with the result.

        ``at`` is the time of the event being folded: a trigger wait that starts now runs from it.
        """
        task = _transitions.changed(old, changes) if changes else old
        task_id = task.task_id
        trigger = self.graph.trigger.get(task_id)
        free = task.status == "pending" and task.deps_pending == 0
        if free and trigger is not None and task.trigger_payload is None:
            free = False
            timeout = self.graph.specs[task_id].timeout_seconds
            if task.wait_deadline is None and timeout is not None:
                task = _transitions.changed(
                    task, {"wait_deadline": at + timedelta(seconds=timeout)}
                )
        self.tasks[task_id] = task

        if free and task_id not in self._runnable:
            insort(self.runnable, task_id, key=self.graph.index.__getitem__)
            self._runnable.add(task_id)
        elif not free and task_id in self._runnable:
            self.runnable.remove(task_id)
            self._runnable.discard(task_id)

        if not is_new:
            self.in_flight += (task.status in IN_FLIGHT_STATUSES) - (
                old.status in IN_FLIGHT_STATUSES
            )
            self.unfinished -= (task.status in FINAL_TASK_STATUSES) - (
                old.status in FINAL_TASK_STATUSES
            )

        timer = _timer_of(task)
        if timer is None:
            self.timers.pop(task_id, None)
        else:
            self.timers[task_id] = timer


def _timer_of(task: TaskState) -> datetime | None:
    if task.status == "retrying":
        return task.retry_at
    if task.status in {"assigned", "running"}:
        return task.deadline
    if task.status == "pending":
        return task.wait_deadline
    return None
