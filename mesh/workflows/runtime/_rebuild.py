"""Rebuild the workflows of one partition from ``workflow.state`` plus ``workflow.events``.

1. Read ``workflow.state`` partition ``p`` to its end: the last record per key wins and a
   tombstone deletes the key (the embedded broker does not compact, so this is what compaction
   would leave).
2. Read ``workflow.events`` partition ``p`` from :func:`rebuild_start` to its end (read
   committed) and fold, per workflow, the events after its snapshot (``sequence`` above the
   snapshot's ``history_sequence``); a workflow without a snapshot is folded from its
   ``workflow.started``. Events are folded in chunks with ``fold`` (not one ``evolve`` per
   event, which would copy a large workflow's tasks for every event).

Timers need no reading: they come back from the rebuilt states (``next_timer``, ended + grace).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import DecisionError, PayloadError
from mesh.events import Mapper, WorkflowEvent, WorkflowSnapshot, WorkflowStarted
from mesh.kafka.history import read_snapshots
from mesh.kafka.payloads import PayloadStore
from mesh.kafka.reader import bounds, read_range
from mesh.log import get_logger
from mesh.settings import Settings
from mesh.workflows import WorkflowState, fold
from mesh.workflows.runtime._partition import Chunked, Tracked
from mesh.workflows.runtime._snapshots import SnapshotInfo, rebuild_start

log = get_logger("mesh.workflows.runtime")

_CHUNK = 1_000


@dataclass
class Rebuilt:
    """The workflows of one partition and what rebuilding them took."""

    partition: int
    workflows: dict[str, Tracked] = field(default_factory=dict)
    snapshots: int = 0
    events: int = 0
    start_offset: int = 0
    end_offset: int = 0
    seconds: float = 0.0


@dataclass
class _Folding:
    """One workflow being rebuilt: its state so far and the events waiting to be folded."""

    tracked: Tracked | None
    sequence: int
    pending: list[WorkflowEvent] = field(default_factory=list)
    last_offset: int | None = None
    first_offset: int | None = None


async def rebuild_partition(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    mapper: Mapper,
    number: int,
    *,
    at_least_once: bool,
    limits: Mapping[TopicPartition, tuple[int, int]] | None = None,
    payloads: PayloadStore | None = None,
) -> Rebuilt:
    """The workflows of partition ``number``, rebuilt; see the module docstring.

    ``limits`` holds (log start, end) offsets of the partition's ``workflow.state`` and
    ``workflow.events`` partitions when the caller took them for many partitions at once.
    """
    began = time.perf_counter()
    result = Rebuilt(number)
    state_tp, events_tp = partitions_of(settings, number)
    if limits is None:
        limits = await bounds(consumer, settings, [state_tp, events_tp])
    found = await read_snapshots(consumer, settings, mapper, [state_tp], limits)
    snapshots, deleted, broken = found.latest, found.deleted, found.unreadable
    high_water = found.high_water
    result.snapshots = len(snapshots)
    # A workflow whose only snapshot cannot be read must be folded from its very start.
    infos = {key: SnapshotInfo("running", None, usable=False) for key in broken}
    folding: dict[str, _Folding] = {}
    for workflow_id, snapshot in snapshots.items():
        state = _state_of(snapshot)
        usable = state is not None or snapshot.history_sequence == 0
        infos[workflow_id] = SnapshotInfo(snapshot.status, snapshot.history_offset, usable)
        chunks = (
            Chunked(snapshot.snapshot_id, snapshot.chunks)
            if snapshot.snapshot_id is not None and snapshot.chunks
            else None
        )
        tracked = (
            Tracked(state, last_offset=snapshot.history_offset, snapshotted=True, chunks=chunks)
            if state is not None
            else None
        )
        folding[workflow_id] = _Folding(tracked, state.sequence if state is not None else 0)
    end = limits[events_tp][1]
    start = rebuild_start(
        infos.values(), end=end, at_least_once=at_least_once, high_water=high_water
    )
    result.start_offset, result.end_offset = start, end
    orphans: set[str] = set()
    async for records in read_range(consumer, settings, events_tp, start, limits[events_tp]):
        result.end_offset = max(result.end_offset, records[-1].offset + 1)
        for record in records:
            key = record.key.decode(errors="replace") if record.key is not None else ""
            if key in deleted and key not in folding:
                continue  # finished and tombstoned
            try:
                event = mapper.decode(record.value, record.headers)
            except Exception as exc:
                log.error(
                    "history record unreadable; skipped", offset=record.offset, error=str(exc)
                )
                continue
            if isinstance(event, WorkflowStarted) and event.plan is None and payloads:
                started = await _with_plan(payloads, event)
                if started is None:
                    continue
                event = started
            if not isinstance(event, WorkflowEvent) or event.sequence is None:
                continue
            entry = folding.get(event.workflow_id)
            if entry is None:
                if not isinstance(event, WorkflowStarted):
                    orphans.add(event.workflow_id)
                    continue
                entry = folding[event.workflow_id] = _Folding(None, 0)
            if event.sequence <= entry.sequence:
                continue  # already in the snapshot, or a redelivered duplicate
            entry.pending.append(event)
            entry.sequence = event.sequence
            entry.last_offset = record.offset
            if isinstance(event, WorkflowStarted):
                entry.first_offset = record.offset
            result.events += 1
            if len(entry.pending) >= _CHUNK:
                _flush(event.workflow_id, entry)
    for workflow_id, entry in folding.items():
        _flush(workflow_id, entry)
        if entry.tracked is not None:
            result.workflows[workflow_id] = replace(
                entry.tracked, snapshotted=workflow_id in snapshots
            )
    if orphans:
        log.warning(
            "history without a start skipped", partition=number, workflows=sorted(orphans)[:10]
        )
    result.seconds = time.perf_counter() - began
    return result


async def _with_plan(payloads: PayloadStore, event: WorkflowStarted) -> WorkflowStarted | None:
    """The start with its plan fetched; None (logged, the workflow skipped) if it cannot be."""
    try:
        return await payloads.with_plan(event)
    except PayloadError as exc:
        log.error("plan by reference unusable", workflow_id=event.workflow_id, error=str(exc))
        return None


def _flush(workflow_id: str, entry: _Folding) -> None:
    if not entry.pending:
        return
    before = entry.tracked
    try:
        state = fold(entry.pending, before.state if before is not None else None)
    except DecisionError as exc:
        log.error(
            "history cannot be folded; workflow left as it was",
            workflow_id=workflow_id,
            error=str(exc),
        )
        entry.pending.clear()
        return
    assert state is not None
    if before is None:
        entry.tracked = Tracked(
            state,
            last_offset=entry.last_offset,
            since_snapshot=len(entry.pending),
            first_offset=entry.first_offset,
        )
    else:
        entry.tracked = replace(
            before,
            state=state,
            last_offset=entry.last_offset,
            since_snapshot=before.since_snapshot + len(entry.pending),
        )
    entry.pending.clear()


def _state_of(snapshot: WorkflowSnapshot) -> WorkflowState | None:
    if snapshot.history_sequence == 0:
        return None  # a start marker: the history from its offset on is the workflow
    try:
        return WorkflowState.from_snapshot_state(snapshot.state, version=snapshot.state_version)
    except DecisionError as exc:
        log.error(
            "snapshot unreadable; folding the workflow from its start",
            workflow_id=snapshot.workflow_id,
            error=str(exc),
        )
        return None


def partitions_of(settings: Settings, number: int) -> tuple[TopicPartition, TopicPartition]:
    """Partition ``number`` of ``workflow.state`` and of ``workflow.events``."""
    return (
        TopicPartition(settings.topic("workflow.state"), number),
        TopicPartition(settings.topic("workflow.events"), number),
    )


def rebuilt_counts(workflows: Mapping[str, Tracked]) -> dict[str, int]:
    """How many rebuilt workflows are in each status (for the rebuild log line)."""
    counts: dict[str, int] = {}
    for tracked in workflows.values():
        counts[tracked.state.status] = counts.get(tracked.state.status, 0) + 1
    return counts
