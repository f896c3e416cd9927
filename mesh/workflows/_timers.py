"""Time-driven decisions: what a ``Tick`` fires.

Timers are derived from state (``WorkflowState.timers``), so a rebuilt replica restores them.
At a tick, in order of their instants (then plan order):

- an assigned or running attempt past its ``deadline`` (assignment or start + the task's
  ``timeout_seconds``) times out: TaskTimedOut, a CancelTask to its agent, then the retry rules
  as for a retriable failure of kind ``timeout``;
- an event-driven task still waiting for its trigger at ``wait_deadline`` (``timeout_seconds``
  after it became otherwise ready) fails for good: TaskFailed with error kind
  ``trigger_timeout``, ``retriable=False``, no agent, and the number of the attempt it never got;
- retries whose ``retry_at`` came are scheduled if the workflow is running and has a slot.

Deadlines and trigger waits fire while paused as well: pausing stops new work, not the clock of
work already out there. Due-ness is judged by ``Tick.now``; the events it produces carry
``DecideContext.now`` like any other decision.
"""

from __future__ import annotations

from datetime import datetime

from mesh.events import TaskFailed, TaskTimedOut
from mesh.workflows._decision import Decision
from mesh.workflows._failures import after_failure, failed_for_good
from mesh.workflows._scheduling import schedule


def fire_timers(decision: Decision, now: datetime) -> None:
    """Fire every timer due at ``now``, then schedule what may start."""
    state = decision.state
    index = state.graph.index
    due = sorted((at, index[task_id], task_id) for task_id, at in state.timers.items() if at <= now)
    for _, _, task_id in due:
        if state.is_final:
            return
        task = state.tasks[task_id]
        spec = state.graph.specs[task_id]
        if (
            task.status in {"assigned", "running"}
            and task.deadline is not None
            and task.deadline <= now
            and spec.timeout_seconds is not None
        ):
            decision.record(
                TaskTimedOut(
                    **decision.meta(),
                    workflow_id=state.workflow_id,
                    task_id=task_id,
                    attempt=task.attempt,
                    timeout_seconds=spec.timeout_seconds,
                )
            )
            after_failure(decision, task_id, retriable=True)
        elif (
            task.status == "pending"
            and task.wait_deadline is not None
            and task.wait_deadline <= now
        ):
            decision.record(
                TaskFailed(
                    **decision.meta(),
                    workflow_id=state.workflow_id,
                    task_id=task_id,
                    attempt=task.attempt + 1,
                    error_kind="trigger_timeout",
                    message=(
                        f"no {spec.trigger!r} event came within {spec.timeout_seconds:g} s "
                        "of the task becoming ready"
                    ),
                    retriable=False,
                )
            )
            failed_for_good(decision, task_id)
    if not state.is_final:
        schedule(decision, retries=True, now=now)


def any_due(timers: dict[str, datetime], now: datetime) -> bool:
    """Whether a tick at ``now`` has any timer to look at (cheap no-op check)."""
    return any(at <= now for at in timers.values())
