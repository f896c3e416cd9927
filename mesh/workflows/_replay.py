"""Folding history events into workflow state: ``evolve`` and ``fold``.

The history (``workflow.events``) holds, each with its ``sequence``:

- the manager's own facts: WorkflowStarted (with the plan), TaskScheduled, TaskRetryScheduled,
  TaskTimedOut, TaskCancelled, TaskSkipped, WorkflowPaused/Resumed/Completed/Failed/Cancelled,
  and TaskFailed with ``error_kind="trigger_timeout"`` when a trigger never came;
- inputs re-recorded as they arrived: TaskAssigned, TaskStarted, TaskCompleted, TaskFailed,
  TaskReassigned, TaskWaiting (why an attempt waits), ExternalEvent (its payload feeds the
  triggered tasks) and RetryTask (it reopens a failure, see ``_transitions``).

That is all a replay needs: ``fold(history)`` rebuilds the live state exactly, and
``fold(events_after, snapshot_state)`` continues from a snapshot.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from mesh.errors import DecisionError
from mesh.events import WorkflowEvent, WorkflowStarted
from mesh.workflows._folding import Folding
from mesh.workflows._state import WorkflowState


def evolve(state: WorkflowState | None, event: WorkflowEvent) -> WorkflowState:
    """The state after one recorded history event (DecisionError if it cannot apply)."""
    result = fold((event,), state)
    if result is None:  # pragma: no cover - fold of one event always yields a state
        raise DecisionError(f"{event.type} did not produce a workflow state")
    return result


def fold(
    events: Iterable[WorkflowEvent], state: WorkflowState | None = None
) -> WorkflowState | None:
    """The state after folding ``events`` in order onto ``state`` (None: no state, no events).

    Events already included in ``state`` (``sequence`` at or below its own) are skipped, so
    ``fold(history_after_snapshot_offset, snapshot_state)`` is safe even with overlap.
    """
    iterator = iter(events)
    first = next(iterator, None)
    if first is None:
        return state  # nothing to fold: no copy
    folding: Folding | None = Folding(state) if state is not None else None
    for event in itertools.chain((first,), iterator):
        if folding is None:
            if not isinstance(event, WorkflowStarted):
                raise DecisionError(
                    f"{event.type} for workflow {event.workflow_id} comes before its "
                    "workflow.started"
                )
            folding = Folding.started(event)
        else:
            folding.apply(event)
    assert folding is not None  # the first event made one
    return folding.freeze()
