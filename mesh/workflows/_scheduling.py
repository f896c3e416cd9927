"""Starting attempts: which tasks get a slot, and when a retry is due.

A task is scheduled (TaskScheduled, then a TaskReady dispatch) only while the workflow is
``running``. Candidates are retries that have come due (earliest ``retry_at`` first: that work
began earlier) and then ``runnable`` tasks in plan order; ``plan.max_parallelism`` caps the
attempts that are ready, assigned or running at once, and the rest wait for a slot.

Back-off: the n-th failure of a task waits ``min(max, initial * multiplier**(n-1))``, then
jitter moves it by up to ``± jitter`` of itself. The jitter is not random but drawn from a hash
of workflow id, task id and attempt, so ``decide`` stays pure and a replay or a second replica
computes the very same ``retry_at``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from mesh.events import RetryPolicy, TaskScheduled
from mesh.workflows._decision import Decision


def backoff_delay(
    policy: RetryPolicy, workflow_id: str, task_id: str, attempt: int, failures: int
) -> float:
    """Seconds to wait after the ``failures``-th failure (of ``attempt``) before trying again."""
    backoff = policy.backoff
    delay = backoff.initial_seconds
    for _ in range(failures - 1):  # at most 99 steps; multiplying step by step cannot overflow
        if delay >= backoff.max_seconds:
            break
        delay *= backoff.multiplier
    delay = min(delay, backoff.max_seconds)
    if policy.jitter:
        digest = hashlib.sha256(f"{workflow_id}/{task_id}/{attempt}".encode()).digest()
        unit = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
        delay *= 1 + policy.jitter * (2 * unit - 1)
    return max(0.0, delay)


def schedule(decision: Decision, *, retries: bool, now: datetime | None = None) -> None:
    """Schedule what may start now. ``retries``: also look for retries due by ``now``.

    Looking for due retries scans the timers, so it is done only when it can find something:
    on a Tick or a resume, or when slots are capped (a freed slot may let a due retry in).
    ``now`` defaults to the decision's time; a Tick passes its own.
    """
    state = decision.state
    if state.status != "running":
        return
    cap = state.plan.max_parallelism
    free = None if cap is None else cap - state.in_flight
    if free is not None and free <= 0:
        return
    chosen: list[str] = []
    if retries:
        now = decision.ctx.now if now is None else now
        index = state.graph.index
        due = sorted(
            (at, index[task_id], task_id)
            for task_id, at in state.timers.items()
            if at <= now
            and state.tasks[task_id].status == "retrying"
            and task_id not in decision.fresh_retries
        )
        chosen.extend(task_id for _, _, task_id in due[:free])
    if free is None:
        chosen.extend(state.runnable)
    elif len(chosen) < free:
        chosen.extend(state.runnable[: free - len(chosen)])
    for task_id in chosen:
        task = state.tasks[task_id]
        decision.record(
            TaskScheduled(
                **decision.meta(),
                workflow_id=state.workflow_id,
                task_id=task_id,
                attempt=task.attempt + 1,
            )
        )
