"""Snapshots on ``workflow.state``: when to write one, what it holds, and where rebuild starts.

A snapshot is written when a workflow starts, when it ends (or is reopened by a RetryTask),
and in between bounded by count, size and time: after ``snapshot_every`` history events, or
half as many events as the workflow has tasks if that is more (a snapshot costs in proportion
to the workflow's size, so a 10,000-task workflow is rewritten every 5,000 events, not every
100: the cost per event stays constant), or after ``max_age`` seconds with events since the
last one — so a rebuild folds a bounded tail of each workflow.
It records ``history_sequence`` and ``history_offset`` (the sequence and the offset in
``workflow.events`` of the last event it includes): rebuild = snapshot + the events after it.

Any size: a state whose record would exceed ``max_event_bytes`` (``workflow.state`` accepts
1 MiB records) is written in *chunks*: its JSON text cut into ``WorkflowSnapshotChunk`` records,
each under its own key (``<workflow> <snapshot id> <index>``), then the ``WorkflowSnapshot``
itself with an empty ``state`` naming the snapshot id and the chunk count. Readers use it only
when every chunk is there (:mod:`mesh.kafka.history`), so a crash between chunks and snapshot
leaves the previous snapshot in force. The previous snapshot's chunks are tombstoned after the
new snapshot, and a forgotten workflow's with it. Chunking, not deltas: one snapshot is all a
rebuild needs (no chain to follow or compact), and compaction keeps exactly the live chunks.
The plan stays in the state: the only other copy is the history's ``workflow.started``, which
the ``delete`` retention of ``workflow.events`` may remove.

A workflow that has no snapshot yet can get a *start marker*: a snapshot with
``history_sequence`` 0 and an empty ``state`` whose ``history_offset`` lies before its
``workflow.started`` (None: from the partition's start), so rebuild knows to fold its history
from there. Readers of ``workflow.state`` must treat ``history_sequence`` 0 as "no state yet".

Without transactions a new workflow's start marker is written (and acknowledged) *before* its
history, pointing at the partition's end as it was, so a crash between its history and its
first snapshot cannot leave history that no record in ``workflow.state`` leads rebuild to.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from mesh.errors import EventTooLarge
from mesh.events import (
    Encoded,
    Mapper,
    Producer,
    WorkflowSnapshot,
    WorkflowSnapshotChunk,
    meta,
)
from mesh.log import get_logger
from mesh.workflows import STATE_VERSION, WorkflowState
from mesh.workflows.runtime._partition import Chunked, Tracked

log = get_logger("mesh.workflows.runtime")

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class SnapshotPolicy:
    """Decides after each transaction which touched workflows get a new snapshot."""

    every: int = 100
    per_task: float = 0.5
    """Events per task between snapshots of a large workflow (see the module docstring)."""
    max_age: float = 60.0
    """Seconds after which a workflow with new events gets a snapshot whatever their number."""

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError("snapshot_every must be at least 1")

    def due(self, before: Tracked | None, after: Tracked, now: datetime | None = None) -> bool:
        """Snapshot at the start, on reaching or leaving a final status, and between them by
        count, size and time (and at the first chance when ``workflow.state`` holds nothing for
        the workflow)."""
        if before is None or not after.snapshotted:
            return True
        if before.state.is_final != after.state.is_final:
            return True
        if after.since_snapshot >= max(self.every, int(len(after.state.tasks) * self.per_task)):
            return True
        return (
            after.since_snapshot > 0
            and now is not None
            and after.snapshot_at is not None
            and (now - after.snapshot_at).total_seconds() >= self.max_age
        )


def snapshot_of(state: WorkflowState, history_offset: int | None, me: Producer) -> WorkflowSnapshot:
    """The snapshot of ``state``, whose last event sits at ``history_offset``.

    Built without validation: ``state`` is the manager's own validated state and its JSON form
    comes from ``to_snapshot_state``; validating that document again costs as much as dumping
    it (about half a second for 10,000 tasks) and proves nothing new.
    """
    status = "running" if state.status == "pending" else state.status
    return WorkflowSnapshot.model_construct(
        **meta(me, correlation_id=state.correlation_id),
        workflow_id=state.workflow_id,
        status=status,
        history_sequence=state.sequence,
        history_offset=history_offset,
        state_version=STATE_VERSION,
        state=state.to_snapshot_state(),
    )


def marker_of(
    workflow_id: str, correlation_id: str, first_offset: int | None, me: Producer
) -> WorkflowSnapshot:
    """A start marker: no state, only "fold this workflow's history from ``first_offset``"."""
    before = first_offset - 1 if first_offset else None
    return WorkflowSnapshot(
        **meta(me, correlation_id=correlation_id),
        workflow_id=workflow_id,
        status="running",
        history_sequence=0,
        history_offset=before,
        state_version=STATE_VERSION,
        state={},
    )


_ENVELOPE_BYTES = 2_048
"""Room in a chunk record for everything but its piece of text (ids, times, names)."""


def snapshot_records(
    mapper: Mapper, state: WorkflowState, history_offset: int | None, me: Producer
) -> tuple[list[Encoded], Chunked | None]:
    """The records of ``state``'s snapshot, in the order to write them: one snapshot, or its
    chunks followed by the snapshot naming them (with which chunks those are)."""
    text = state.model_dump_json()
    if len(text) + _ENVELOPE_BYTES <= mapper.max_event_bytes:
        try:
            return [mapper.encode(snapshot_of(state, history_offset, me))], None
        except EventTooLarge:
            pass  # multi-byte characters: chunk it after all
    snapshot_id = uuid.uuid4().hex
    pieces = _pieces(text, max(1, (mapper.max_event_bytes - _ENVELOPE_BYTES) * 3 // 4))
    while True:
        try:
            chunks = [
                mapper.encode(
                    WorkflowSnapshotChunk(
                        **meta(me, correlation_id=state.correlation_id),
                        workflow_id=state.workflow_id,
                        snapshot_id=snapshot_id,
                        index=index,
                        count=len(pieces),
                        data=piece,
                    )
                )
                for index, piece in enumerate(pieces)
            ]
            break
        except EventTooLarge:  # escaping made a piece too large: cut them finer
            pieces = _pieces(text, max(1, len(pieces[0]) // 2))
    status = "running" if state.status == "pending" else state.status
    head = WorkflowSnapshot.model_construct(
        **meta(me, correlation_id=state.correlation_id),
        workflow_id=state.workflow_id,
        status=status,
        history_sequence=state.sequence,
        history_offset=history_offset,
        state_version=STATE_VERSION,
        state={},
        snapshot_id=snapshot_id,
        chunks=len(chunks),
    )
    log.debug("snapshot chunked", workflow_id=state.workflow_id, chunks=len(chunks))
    return [*chunks, mapper.encode(head)], Chunked(snapshot_id, len(chunks))


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@dataclass(frozen=True)
class SnapshotInfo:
    """What rebuild needs to know of the latest snapshot of one workflow."""

    status: str
    history_offset: int | None
    usable: bool = True
    """False when its state could not be read: the workflow must be folded from its start."""

    @property
    def live(self) -> bool:
        return self.status not in FINAL_STATUSES


def resume_offset(info: SnapshotInfo) -> int:
    """Where a workflow's history continues after its snapshot (0 when unknown)."""
    if not info.usable or info.history_offset is None:
        return 0
    return info.history_offset + 1


def rebuild_start(
    snapshots: Iterable[SnapshotInfo],
    *,
    end: int,
    at_least_once: bool,
    high_water: int | None,
) -> int:
    """The first ``workflow.events`` offset a rebuild of the partition must read.

    With transactions every change of a workflow commits with the snapshot it calls for, so
    only the earliest position after a live (non-final) snapshot matters, and with none live
    there is nothing to fold (``end``). Without transactions a crash can fall between history
    and its snapshot: a new workflow is covered by its start marker (written first), but a
    finished one reopened by a RetryTask may have history after a final snapshot, so final
    snapshots count too, as does the history after the furthest position any snapshot record
    recorded (``high_water``; all of it if there was none).
    """
    if at_least_once:
        starts = [resume_offset(info) for info in snapshots]
        starts.append(high_water + 1 if high_water is not None else 0)
    else:
        starts = [resume_offset(info) for info in snapshots if info.live or not info.usable]
    return min([*starts, end])
