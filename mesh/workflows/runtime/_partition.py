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

from mesh.events import chunk_key
from mesh.workflows import WorkflowState
from mesh.workflows.runtime._timers import TimerHeap


@dataclass(frozen=True, slots=True)
class Chunked:
    """Which chunks hold a workflow's latest snapshot (to tombstone them when replaced)."""

    snapshot_id: str
    count: int

    def keys(self, workflow_id: str) -> list[bytes]:
        return [chunk_key(workflow_id, self.snapshot_id, i).encode() for i in range(self.count)]


@dataclass(frozen=True, slots=True)
class Tracked:
    """A workflow's state with where its history and snapshots stand in partition ``p``."""

    state: WorkflowState
    last_offset: int | None = None
    """Offset in ``workflow.events`` of the last history event folded into ``state``."""
    since_snapshot: int = 0
    """History events folded since the last snapshot was written."""
    snapshotted: bool = False
    """Whether ``workflow.state`` holds a record for it (a snapshot or a start marker), i.e.
    whether a tombstone is needed once it is forgotten."""
    first_offset: int | None = None
    """Offset of its ``workflow.started``, while known (what a start marker points at)."""
    snapshot_at: datetime | None = None
    """When this replica last wrote its snapshot (None: not this replica, or never)."""
    chunks: Chunked | None = None
    """The chunks its latest snapshot was written in (None: one record, or none)."""


@dataclass(frozen=True, slots=True)
class Ended:
    """What stays in memory of a finished workflow whose final snapshot is written: enough to
    tombstone it after its grace period, and to know it must be read back from Kafka (not
    started afresh) if an input for it comes."""

    ended_at: datetime
    chunks: Chunked | None = None


def evictable(tracked: Tracked) -> bool:
    """Whether ``workflow.state`` holds the whole of this finished workflow."""
    return tracked.state.is_final and tracked.snapshotted and tracked.since_snapshot == 0


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
    """The workflows of one partition number and their timers.

    A finished workflow leaves ``workflows`` once its final snapshot is written (memory stays
    flat however many workflows a replica has run): ``ended`` keeps its end time until the
    grace period is over, and an input for it reads it back from Kafka first (``restore``).
    """

    number: int
    grace: timedelta
    workflows: dict[str, Tracked] = field(default_factory=dict)
    ended: dict[str, Ended] = field(default_factory=dict)
    """Finished workflows held on Kafka only, until they are tombstoned."""
    timers: TimerHeap = field(default_factory=TimerHeap)
    log_end: int = 0
    """A lower bound of the next offset of ``workflow.events`` partition ``p`` (this replica
    is its only writer): where a new workflow's history will start at the earliest."""
    restored: set[str] = field(default_factory=set)
    """Finished workflows read back for an input, to leave memory again after its round."""

    def put(self, workflow_id: str, tracked: Tracked | None) -> None:
        """Store (or, with None, forget) a workflow and reset its timer from its state; a
        finished one whose final snapshot is written is kept as ``ended`` only."""
        self.ended.pop(workflow_id, None)
        if tracked is None:
            self.workflows.pop(workflow_id, None)
            self.timers.set(workflow_id, None)
            return
        if evictable(tracked):
            self.workflows.pop(workflow_id, None)
            ended = Ended(tracked.state.ended_at or tracked.state.started_at, tracked.chunks)
            self.ended[workflow_id] = ended
            self.timers.set(workflow_id, ended.ended_at + self.grace)
            return
        self.workflows[workflow_id] = tracked
        self.timers.set(workflow_id, due_at(tracked, self.grace))

    def restore(self, workflow_id: str, tracked: Tracked) -> None:
        """Hold a finished workflow read back from Kafka while an input for it is decided."""
        self.ended.pop(workflow_id, None)
        self.workflows[workflow_id] = tracked
        self.timers.set(workflow_id, due_at(tracked, self.grace))
        self.restored.add(workflow_id)

    def settle(self) -> None:
        """Let workflows restored for a round leave memory again if they are still finished."""
        for workflow_id in self.restored:
            tracked = self.workflows.get(workflow_id)
            if tracked is not None:
                self.put(workflow_id, tracked)
        self.restored.clear()

    def load(self, workflows: dict[str, Tracked], log_end: int = 0) -> None:
        """Replace everything with rebuilt workflows (timers come back from their states)."""
        self.workflows.clear()
        self.ended.clear()
        self.restored.clear()
        self.timers.clear()
        self.log_end = log_end
        for workflow_id, tracked in workflows.items():
            self.put(workflow_id, tracked)
