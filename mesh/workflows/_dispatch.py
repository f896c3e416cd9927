"""What to send because of events just recorded: TaskReady and CancelTask messages.

- For each TaskScheduled whose attempt is still current and out: a TaskReady (keyed by the
  workflow id) carrying the task's spec with ``inputs`` extended by ``upstream`` (dependency id →
  its output; the previous task in a sequential plan) and, for a triggered task, ``event`` (the
  external event's payload); ``upstream`` and ``event`` are reserved input names and replace any
  the plan set. Priority and tenant come from the plan.
- For each TaskCancelled or TaskTimedOut of an attempt that an agent held: a CancelTask keyed by
  that agent's id. An attempt that was only ``ready`` has no agent to tell; if it is assigned
  later, the agent's reports are stale and ignored.
- For each TaskReassigned: a CancelTask to the agent it was taken from, in case it is not dead
  but cut off, so the attempt does not run twice.

The messages are new events caused by the history event they follow, stamped with ``ctx``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import JsonValue

from mesh.events import (
    CancelTask,
    Event,
    Meta,
    TaskCancelled,
    TaskReady,
    TaskReassigned,
    TaskScheduled,
    TaskTimedOut,
    WorkflowEvent,
    meta,
)
from mesh.workflows._decision import one_line
from mesh.workflows._graph import graph_of
from mesh.workflows._state import IN_FLIGHT_STATUSES, WorkflowState

if TYPE_CHECKING:
    from mesh.workflows._decider import DecideContext


def dispatches(
    state: WorkflowState, events: Sequence[WorkflowEvent], ctx: DecideContext
) -> list[Event]:
    """Messages to send because ``events`` were recorded; ``state`` is after folding them."""
    graph = graph_of(state.plan)
    out: list[Event] = []
    for event in events:
        if isinstance(event, TaskScheduled):
            task = state.tasks.get(event.task_id)
            if task is None or task.attempt != event.attempt:
                continue
            if task.status not in IN_FLIGHT_STATUSES:
                continue  # cancelled again within the same decision
            spec = graph.specs[event.task_id]
            upstream: dict[str, JsonValue] = {
                dep: dict(state.tasks[dep].output) for dep in graph.deps[event.task_id]
            }
            inputs: dict[str, JsonValue] = {**spec.inputs, "upstream": upstream}
            if task.trigger_payload is not None:
                inputs["event"] = dict(task.trigger_payload)
            out.append(
                TaskReady(
                    **_stamp(event, ctx),
                    workflow_id=state.workflow_id,
                    task_id=event.task_id,
                    attempt=event.attempt,
                    task=spec.model_copy(update={"inputs": inputs}),
                    priority=state.plan.priority,
                    tenant=state.plan.tenant,
                )
            )
        elif isinstance(event, TaskCancelled | TaskTimedOut):
            task = state.tasks.get(event.task_id)
            if (
                event.attempt is None
                or task is None
                or task.attempt != event.attempt
                or task.agent_id is None
            ):
                continue
            reason = (
                event.reason
                if isinstance(event, TaskCancelled)
                else f"attempt {event.attempt} exceeded its timeout of {event.timeout_seconds:g} s"
            )
            out.append(
                CancelTask(
                    **meta(
                        ctx.producer, causation=event, occurred_at=ctx.now, event_id=ctx.new_id()
                    ),
                    workflow_id=state.workflow_id,
                    task_id=event.task_id,
                    attempt=event.attempt,
                    agent_id=task.agent_id,
                    reason=one_line(reason),
                )
            )
        elif isinstance(event, TaskReassigned):
            out.append(
                CancelTask(
                    **meta(
                        ctx.producer, causation=event, occurred_at=ctx.now, event_id=ctx.new_id()
                    ),
                    workflow_id=state.workflow_id,
                    task_id=event.task_id,
                    attempt=event.attempt,
                    agent_id=event.from_agent_id,
                    reason=one_line(
                        f"task reassigned: {event.reason}" if event.reason else "task reassigned"
                    ),
                )
            )
    return out


def _stamp(cause: WorkflowEvent, ctx: DecideContext) -> Meta:
    return meta(ctx.producer, causation=cause, occurred_at=ctx.now, event_id=ctx.new_id())
