"""Turning the task path into allocator inputs: ready tasks into requests, endings into releases.

The flow between the Workflow Manager, the allocator and the Agent Manager is decided elsewhere;
these pure functions are what any of them needs to call the allocator:

- :func:`request_for_ready` makes the ``ResourceRequested`` for a ``TaskReady`` (allocation id
  derived from workflow, task and attempt, so a redelivered ``TaskReady`` is the same request);
- :func:`release_target` says which allocations an ending (task completed, failed, timed out,
  reassigned, cancelled, skipped; workflow finished) gives back;
- :func:`forecast_for_plan` turns a plan's estimates into the ``ResourceForecast`` the
  predictive policy reserves for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from mesh.events import (
    Event,
    ExecutionPlan,
    ForecastItem,
    Producer,
    ResourceForecast,
    ResourceRequested,
    Resources,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskReady,
    TaskReassigned,
    TaskSkipped,
    TaskTimedOut,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    meta,
)

_MAX_ID = 200


def forecast_for_plan(
    plan: ExecutionPlan,
    workflow_id: str,
    producer: Producer,
    *,
    started_at: datetime,
    correlation_id: str | None = None,
) -> ResourceForecast:
    """When each task of ``plan`` is expected to ask for resources: its earliest start, the
    longest chain of estimated durations before it (tasks without an estimate count as 0)."""
    tasks = {t.task_id: t for t in plan.tasks}
    start: dict[str, float] = {}

    def earliest(task_id: str) -> float:
        if task_id not in start:
            start[task_id] = 0.0  # plans are acyclic (validated); this only guards recursion
            start[task_id] = (
                max(
                    (earliest(d) + (tasks[d].estimated_duration_seconds or 0.0))
                    for d in tasks[task_id].depends_on
                )
                if tasks[task_id].depends_on
                else 0.0
            )
        return start[task_id]

    items = [
        ForecastItem(
            task_id=t.task_id,
            resources=t.resources,
            expected_at=started_at + timedelta(seconds=earliest(t.task_id)),
        )
        for t in plan.tasks
    ]
    return ResourceForecast(
        **meta(producer, correlation_id=correlation_id or workflow_id),
        workflow_id=workflow_id,
        tenant=plan.tenant,
        items=items,
    )


def allocation_id_for(workflow_id: str, task_id: str, attempt: int) -> str:
    """The allocation id of a task attempt: readable when short enough, else a digest."""
    readable = f"{workflow_id}/{task_id}/{attempt}"
    if len(readable) <= _MAX_ID:
        return readable
    digest = hashlib.sha256(readable.encode()).hexdigest()[:40]
    return f"{readable[: _MAX_ID - 42]}~{digest}"


def request_for_ready(
    ready: TaskReady, producer: Producer, *, resources: Resources | None = None
) -> ResourceRequested:
    """The request a ready attempt makes: its task's needs (or ``resources``, e.g. the
    planner's estimate), its priority, tenant and deadline, and the task to forward."""
    task = ready.task
    return ResourceRequested(
        **meta(producer, causation=ready),
        allocation_id=allocation_id_for(ready.workflow_id, ready.task_id, ready.attempt),
        workflow_id=ready.workflow_id,
        task_id=ready.task_id,
        attempt=ready.attempt,
        tenant=ready.tenant,
        resources=resources if resources is not None else task.resources,
        priority=ready.priority,
        deadline=ready.deadline,
        estimated_duration_seconds=task.estimated_duration_seconds,
        task=task,
    )


@dataclass(frozen=True)
class ReleaseTarget:
    """Which allocations an event ends: one attempt, every attempt of a task, or a workflow."""

    workflow_id: str
    task_id: str | None
    attempt: int | None
    reason: str


def release_target(event: Event) -> ReleaseTarget | None:
    """What ``event`` releases, or None if it ends nothing."""
    if isinstance(event, TaskCompleted):
        return ReleaseTarget(event.workflow_id, event.task_id, event.attempt, "task completed")
    if isinstance(event, TaskFailed):
        why = f"task failed ({event.error_kind})"
        return ReleaseTarget(event.workflow_id, event.task_id, event.attempt, why)
    if isinstance(event, TaskTimedOut):
        return ReleaseTarget(event.workflow_id, event.task_id, event.attempt, "task timed out")
    if isinstance(event, TaskReassigned):
        why = f"agent {event.from_agent_id} lost" + (f": {event.reason}" if event.reason else "")
        return ReleaseTarget(event.workflow_id, event.task_id, event.attempt, why)
    if isinstance(event, TaskCancelled):
        return ReleaseTarget(event.workflow_id, event.task_id, event.attempt, "task cancelled")
    if isinstance(event, TaskSkipped):
        return ReleaseTarget(event.workflow_id, event.task_id, None, "task skipped")
    if isinstance(event, WorkflowCancelled | WorkflowFailed | WorkflowCompleted):
        ended = event.type.rpartition(".")[2]
        return ReleaseTarget(event.workflow_id, None, None, f"workflow {ended}")
    return None
