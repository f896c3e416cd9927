"""What a failed attempt leads to: a retry, the failure policy, or the end of the workflow.

- An attempt that failed with ``retriable=True`` (a timeout counts as one, error kind
  ``timeout``), whose error kind is not in ``retry.non_retryable`` and whose task has failed
  fewer than ``retry.max_attempts`` times is retried: TaskRetryScheduled, then at ``retry_at``
  a TaskScheduled for the next attempt. Failures are counted, not attempt numbers, so attempts
  lost to a reassignment or a cancellation do not use up the policy.
- Otherwise the task failed for good (status ``failed``, or ``timed_out`` after a timeout):
  ``fail_fast`` cancels every unfinished task (TaskCancelled) and fails the workflow;
  ``continue`` skips every task that depends on it, directly or not (TaskSkipped), and lets
  independent branches go on.
- When no task is left unfinished the workflow ends: WorkflowFailed naming every task that
  failed for good, if any did, else WorkflowCompleted. This holds while paused, too: a paused
  workflow whose last running task finishes has nothing left to resume.
"""

from __future__ import annotations

from datetime import timedelta

from mesh.events import (
    TaskCancelled,
    TaskRetryScheduled,
    TaskSkipped,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
)
from mesh.workflows._decision import Decision, one_line
from mesh.workflows._scheduling import backoff_delay
from mesh.workflows._state import FAILED_STATUSES, IN_FLIGHT_STATUSES


def after_failure(decision: Decision, task_id: str, *, retriable: bool) -> None:
    """Retry the task that just failed (recorded already), or apply the failure policy."""
    state = decision.state
    task = state.tasks[task_id]
    policy = state.graph.specs[task_id].retry
    kind = task.error_kind or "error"
    if retriable and kind not in policy.non_retryable and task.failures < policy.max_attempts:
        delay = backoff_delay(policy, state.workflow_id, task_id, task.attempt, task.failures)
        decision.record(
            TaskRetryScheduled(
                **decision.meta(),
                workflow_id=state.workflow_id,
                task_id=task_id,
                attempt=task.attempt + 1,
                retry_at=decision.ctx.now + timedelta(seconds=delay),
                delay_seconds=delay,
                last_error_kind=kind,
            )
        )
        decision.fresh_retries.add(task_id)
    else:
        failed_for_good(decision, task_id)


def failed_for_good(decision: Decision, task_id: str) -> None:
    """Apply the plan's failure policy to a task that will not be retried."""
    state = decision.state
    task = state.tasks[task_id]
    if state.plan.failure_policy == "fail_fast":
        reason = one_line(f"task {task_id} failed: {task.error_kind}: {task.error_message}")
        end_all(decision, reason, failed=(task_id,))
        return
    doomed: set[str] = set()
    stack = list(state.graph.dependants[task_id])
    while stack:
        dependant = stack.pop()
        if dependant in doomed or state.tasks[dependant].is_final:
            continue  # already skipped by another failure, and its dependants with it
        doomed.add(dependant)
        stack.extend(state.graph.dependants[dependant])
    reason = one_line(f"it depends, directly or not, on task {task_id}, which failed")
    for dependant in sorted(doomed, key=state.graph.index.__getitem__):
        decision.record(
            TaskSkipped(
                **decision.meta(), workflow_id=state.workflow_id, task_id=dependant, reason=reason
            )
        )
    finish_if_done(decision)


def end_all(decision: Decision, reason: str, *, failed: tuple[str, ...] | None) -> None:
    """Cancel every unfinished task, then fail (``failed`` given) or cancel the workflow."""
    state = decision.state
    for task_id in state.graph.index:
        task = state.tasks[task_id]
        if task.is_final:
            continue
        decision.record(
            TaskCancelled(
                **decision.meta(),
                workflow_id=state.workflow_id,
                task_id=task_id,
                attempt=task.attempt if task.status in IN_FLIGHT_STATUSES else None,
                reason=reason,
            )
        )
    if failed is None:
        decision.record(
            WorkflowCancelled(**decision.meta(), workflow_id=state.workflow_id, reason=reason)
        )
    else:
        decision.record(
            WorkflowFailed(
                **decision.meta(),
                workflow_id=state.workflow_id,
                reason=reason or "failed",
                failed_task_ids=failed,
            )
        )


def finish_if_done(decision: Decision) -> None:
    """End the workflow once every task is final."""
    state = decision.state
    if state.is_final or state.unfinished > 0:
        return
    tasks = state.tasks
    failed = tuple(t for t in state.graph.index if tasks[t].status in FAILED_STATUSES)
    if failed:
        shown = ", ".join(failed[:10]) + (
            f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        )
        decision.record(
            WorkflowFailed(
                **decision.meta(),
                workflow_id=state.workflow_id,
                reason=one_line(f"{len(failed)} task(s) failed for good: {shown}"),
                failed_task_ids=failed,
            )
        )
        return
    statuses = [task.status for task in tasks.values()]
    decision.record(
        WorkflowCompleted(
            **decision.meta(),
            workflow_id=state.workflow_id,
            completed_tasks=statuses.count("succeeded"),
            skipped_tasks=statuses.count("skipped"),
        )
    )
