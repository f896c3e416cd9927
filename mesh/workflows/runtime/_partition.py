"""What a replica holds for one owned partition number: workflow states and timers.

Co-partitioning makes partition ``p`` of ``plans``, ``commands`` and ``tasks.results`` (the
inputs) and of ``workflow.events`` and ``workflow.state`` (the outputs) one unit: the replica
that owns input partition ``p`` keeps the states of the workflows whose ids hash to ``p``, writes
their history and snapshots to partition ``p`` (on real Kafka through the loop's transactional
producer ``<group>-<p>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mesh.workflows import WorkflowState
from mesh.workflows.runtime._timers import TimerHeap


@dataclass(frozen=True, slots=True)
class Tracked:
    """A workflow's state with where its history and snapshots stand in partition ``p``."""

    state: WorkflowState
    last_offset: int | None = None
    """Offset in ``workflow.events`` of the last history event folded into ``state``."""
    since_snapshot: int = 0
    """History events folded since the last snapshot was written (or skipped as too large)."""
    snapshotted: bool = False
    """Whether ``workflow.state`` holds a record for it (a snapshot or a start marker), i.e.
    whether a tombstone is needed once it is forgotten."""
    first_offset: int | None = None
    """Offset of its ``workflow.started``, while known (what a start marker points at)."""
    snapshot_at: datetime | None = None
    """When this replica last wrote its snapshot (None: not this replica, or never)."""
    oversize: bool = False
    """A snapshot of it was over the size limit; a state only grows (outputs accumulate), so
    no more are tried (each try serialises the whole workflow for nothing)."""


def due_at(tracked: Tracked, grace: timedelta) -> datetime | None:
    """When the workflow next needs the clock: its next timer while it runs; once finished, the
    end of its grace period (then it is tombstoned and forgotten)."""
    state = tracked.state
    if state.is_final:
        ended = state.ended_at or state.started_at
        return ended + grace
    return state.next_timer()


@dataclass
class Partition:
    """The workflows of one partition number and their timers."""

    number: int
    grace: timedelta
    workflows: dict[str, Tracked] = field(default_factory=dict)
    timers: TimerHeap = field(default_factory=TimerHeap)
    log_end: int = 0
    """A lower bound of the next offset of ``workflow.events`` partition ``p`` (this replica
    is its only writer): where a new workflow's history will start at the earliest."""

    def put(self, workflow_id: str, tracked: Tracked | None) -> None:
        """Store (or, with None, forget) a workflow and reset its timer from its state."""
        if tracked is None:
            self.workflows.pop(workflow_id, None)
            self.timers.set(workflow_id, None)
            return
        self.workflows[workflow_id] = tracked
        self.timers.set(workflow_id, due_at(tracked, self.grace))

    def load(self, workflows: dict[str, Tracked], log_end: int = 0) -> None:
        """Replace everything with rebuilt workflows (timers come back from their states)."""
        self.workflows.clear()
        self.timers.clear()
        self.log_end = log_end
        for workflow_id, tracked in workflows.items():
            self.put(workflow_id, tracked)
