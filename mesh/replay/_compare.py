"""Replay one workflow from its history and compare it with its live snapshot.

Replay folds the workflow's history with the same ``fold``/``evolve`` the Workflow Manager uses,
so its result must equal the snapshot the manager wrote at the same history position; any
difference is a bug, and each differing field is named (:func:`mesh.replay.diff_states`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mesh.errors import ConfigError, DecisionError
from mesh.events import WorkflowEvent, WorkflowSnapshot
from mesh.kafka.history import read_history, snapshot_state
from mesh.replay._diff import diff_states
from mesh.settings import Settings
from mesh.workflows import WorkflowState, fold

MAX_DIFFERENCES = 200


@dataclass(frozen=True)
class ReplayResult:
    """A workflow folded from its history, and how that compares with its latest snapshot."""

    workflow_id: str
    state: WorkflowState
    event_count: int
    """History events folded (duplicates and events after ``until_sequence`` not counted)."""
    events: list[WorkflowEvent]
    snapshot: WorkflowSnapshot | None
    equal: bool | None
    """Whether the snapshot's state equals the replay folded up to the snapshot's position;
    None when there is no snapshot with a state to compare (none, or only a start marker)."""
    differences: list[str] = field(default_factory=list)
    partition: int = 0


async def replay_workflow(
    settings: Settings, workflow_id: str, *, until_sequence: int | None = None
) -> ReplayResult:
    """Fold ``workflow_id``'s history (up to ``until_sequence``) and check it against its
    latest snapshot. Raises ``UnknownWorkflow`` if the history holds no event of it."""
    if until_sequence is not None and until_sequence < 1:
        raise ConfigError("until_sequence must be 1 or more")
    history = await read_history(settings, workflow_id)
    events = [r.event for r in history.records]
    chosen = [e for e in events if until_sequence is None or (e.sequence or 0) <= until_sequence]
    state = _fold(chosen, workflow_id)
    snapshot = history.snapshot
    equal: bool | None = None
    found: list[str] = []
    if snapshot is not None and snapshot.history_sequence > 0:
        found = compare(snapshot, events, workflow_id)
        equal = not found
    return ReplayResult(
        workflow_id=workflow_id,
        state=state,
        event_count=len(chosen),
        events=chosen,
        snapshot=snapshot,
        equal=equal,
        differences=found,
        partition=history.partition,
    )


def compare(
    snapshot: WorkflowSnapshot, history: Sequence[WorkflowEvent], workflow_id: str
) -> list[str]:
    """Each difference between the snapshot and the history folded to its position."""
    at = [e for e in history if (e.sequence or 0) <= snapshot.history_sequence]
    if not at or at[-1].sequence != snapshot.history_sequence:
        reached = at[-1].sequence if at else 0
        return [
            f"history reaches sequence {reached} but the snapshot includes up to "
            f"{snapshot.history_sequence}"
        ]
    replayed = _fold(at, workflow_id)
    try:
        live = snapshot_state(snapshot)
    except DecisionError as exc:
        return [f"snapshot state unreadable: {exc}"]
    assert live is not None  # a snapshot with a sequence holds a state
    return [str(d) for d in diff_states(live, replayed)[:MAX_DIFFERENCES]]


def _fold(events: Sequence[WorkflowEvent], workflow_id: str) -> WorkflowState:
    try:
        state = fold(events)
    except DecisionError as exc:
        raise DecisionError(f"the history of workflow {workflow_id} does not fold: {exc}") from exc
    assert state is not None  # read_history raised UnknownWorkflow for an empty history
    return state


__all__ = ["MAX_DIFFERENCES", "ReplayResult", "compare", "replay_workflow"]
