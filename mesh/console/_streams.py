"""Live streams for the console, each message addressed by its Kafka position.

A browser that reconnects sends the last id it saw (``Last-Event-ID``); the stream rebuilds
what it needs from Kafka alone and sends only what lies after that position, so nothing is
missed or repeated, also when the console itself restarted in between.

- :func:`follow_workflow`: one workflow's history events from its partition of
  ``workflow.events``; the id is ``<topic>:<partition>:<offset>`` of the event.
- :func:`follow_workflows`: every workflow's row (status, progress …), rebuilt from the latest
  snapshots plus the history after them; the id is a position per partition
  (``<partition>:<next offset>,…``), the point up to which every row sent is current.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from aiokafka import TopicPartition

from mesh.console._views import iso, task_brief, workflow_row
from mesh.errors import ConfigError, DecisionError, EventError, MeshError
from mesh.events import Mapper, WorkflowEvent, WorkflowSnapshot, WorkflowStarted
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import kafka_errors
from mesh.kafka.partitions import partition_for, topic_partitions
from mesh.kafka.payloads import with_plan
from mesh.kafka.reader import bounds, read_range, reader
from mesh.replay import describe_change, latest_snapshots, snapshot_state
from mesh.settings import Settings
from mesh.workflows import Folding, TaskState

log = structlog.get_logger("mesh.console")

KEEPALIVE_SECONDS = 15.0
"""A comment line this often keeps proxies from closing a quiet stream and finds gone clients."""

POLL_MS = 250
"""How long one fetch waits for new records; with the reader's short fetch wait, a record
written to the topic is handed on well within a second."""


class _Quiet:
    """When a stream that sent nothing for a while owes its reader a keepalive."""

    def __init__(self) -> None:
        self.since = time.monotonic()

    def keepalive_due(self, sent: bool) -> bool:
        now = time.monotonic()
        if sent or now - self.since > KEEPALIVE_SECONDS:
            self.since = now
            return not sent
        return False


@dataclass(frozen=True)
class Message:
    """One server-sent event: its name, its id (a Kafka position) and its JSON data."""

    event: str
    id: str | None
    data: dict[str, Any]


def workflow_position(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


def parse_workflow_position(text: str, topic: str) -> int:
    """The offset in an id made by :func:`workflow_position`; ConfigError if it is not one of
    this workflow's topic."""
    found_topic, _, rest = text.rpartition(":")
    name, _, partition = found_topic.rpartition(":")
    if name != topic or not rest.lstrip("-").isdigit() or not partition.isdigit():
        raise ConfigError(f"not a position of {topic}: {text!r}")
    return int(rest)


def vector(positions: dict[int, int]) -> str:
    """``partition:next offset`` for every partition, in partition order."""
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


def parse_vector(text: str) -> dict[int, int]:
    """The positions in an id made by :func:`vector`; ConfigError if malformed."""
    found: dict[int, int] = {}
    for part in filter(None, text.split(",")):
        partition, sep, offset = part.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ConfigError(f"not a list of partition:offset positions: {text!r}")
        found[int(partition)] = int(offset)
    return found


def _decode(mapper: Mapper, record: Any) -> WorkflowEvent | None:
    """The history event in ``record``; None for anything else (a bad record is the Workflow
    Manager's to dead-letter, not the console's to stop on)."""
    try:
        event = mapper.decode(record.value, record.headers)
    except EventError as exc:
        log.warning("unreadable history record", offset=record.offset, error=str(exc))
        return None
    if isinstance(event, WorkflowEvent) and event.sequence is not None:
        return event
    return None


async def _fetched(settings: Settings, mapper: Mapper, record: Any) -> WorkflowEvent | None:
    """:func:`_decode`, with the plan of a start by reference fetched (None if it cannot be:
    the console shows the workflow from its snapshot rather than stop)."""
    event = _decode(mapper, record)
    if isinstance(event, WorkflowStarted) and event.plan is None:
        try:
            return await with_plan(settings, mapper, event)
        except MeshError as exc:
            log.warning("plan by reference unreadable", offset=record.offset, error=str(exc))
            return None
    return event


class _Tracked:
    """One workflow folded as its history comes, with the number of final tasks kept up to
    date from the tasks each event changed (no scan of every task per event)."""

    def __init__(self, folding: Folding) -> None:
        self.folding = folding
        self.done = sum(1 for t in folding.tasks.values() if t.is_final)

    def apply(self, event: WorkflowEvent) -> list[TaskState]:
        """Fold ``event``; the tasks it changed (each ``put`` replaces a task's object)."""
        before = self.folding.tasks.freeze()
        self.folding.apply(event)
        changed = self.folding.tasks.changed_since(before)
        self.done += sum(t.is_final for t in changed) - sum(
            before[t.task_id].is_final for t in changed if t.task_id in before
        )
        return changed


async def follow_workflow(
    settings: Settings, workflow_id: str, *, after: int = -1
) -> AsyncIterator[Message | None]:
    """Every history event of ``workflow_id`` recorded after offset ``after``, then live ones
    as they come, for as long as the caller reads; None now and then when nothing happens.

    The events up to ``after`` are folded (not sent) so that each message can carry the task
    states the event left behind."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    topic = settings.topic("workflow.events")
    key = workflow_id.encode()
    consumer = reader(settings)
    tracked: _Tracked | None = None
    try:
        with kafka_errors(settings, "connect to Kafka"):
            await consumer.start()
        partitions = await topic_partitions(consumer, settings, topic)
        tp = TopicPartition(topic, partition_for(workflow_id, len(partitions)))

        def fold(record: Any, event: WorkflowEvent | None) -> Message | None:
            nonlocal tracked
            if event is None:
                return None
            if tracked is None:
                if not isinstance(event, WorkflowStarted):
                    return None  # the history's start is gone (retention): nothing to fold on
                tracked = _Tracked(Folding.started(event))
                changed = list(tracked.folding.tasks.values())
                before_status, before_task = "pending", None
            else:
                if (event.sequence or 0) <= tracked.folding.sequence:
                    return None  # a duplicate written without transactions
                task_id = getattr(event, "task_id", None)
                before_status = tracked.folding.status
                before_task = tracked.folding.tasks.get(task_id) if task_id else None
                changed = tracked.apply(event)
            if record.offset <= after:
                return None
            return _history_message(
                topic, tp.partition, record, event, tracked, changed, before_status, before_task
            )

        batches = cast(AsyncGenerator[list[Any], None], read_range(consumer, settings, tp, 0))
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for record in batch:
                    if record.key != key:
                        continue
                    event = await _fetched(settings, mapper, record)
                    if (message := fold(record, event)) is not None:
                        yield message
        quiet = _Quiet()
        while True:
            with kafka_errors(settings, f"follow {topic}[{tp.partition}]"):
                batch = await consumer.getmany(tp, timeout_ms=POLL_MS, max_records=1_000)
            sent = False
            for record in batch.get(tp, ()):
                if record.key != key:
                    continue
                event = await _fetched(settings, mapper, record)
                if (message := fold(record, event)) is not None:
                    sent = True
                    yield message
            if quiet.keepalive_due(sent):
                yield None
    finally:
        await stop_clients(consumer)


def _history_message(
    topic: str,
    partition: int,
    record: Any,
    event: WorkflowEvent,
    tracked: _Tracked,
    changed: list[TaskState],
    before_status: str,
    before_task: TaskState | None,
) -> Message:
    folding = tracked.folding
    task_id = getattr(event, "task_id", None)
    after_task = folding.tasks.get(task_id) if isinstance(task_id, str) else None
    if event.type == "workflow.started":
        change = f"workflow: started ({len(folding.tasks)} tasks)"
    else:
        change = describe_change(before_status, folding.status, before_task, after_task)
    return Message(
        "history",
        workflow_position(topic, partition, record.offset),
        {
            "position": f"{partition}:{record.offset}",
            "offset": record.offset,
            "sequence": event.sequence,
            "index": event.sequence,
            "type": event.type,
            "time": event.occurred_at.isoformat(),
            "task_id": task_id if isinstance(task_id, str) else None,
            "change": change,
            "workflow_status": folding.status,
            "workflow": {
                "status": folding.status,
                "reason": folding.reason,
                "done": tracked.done,
                "total": len(folding.tasks),
                "sequence": folding.sequence,
                "ended_at": iso(folding.ended_at),
            },
            "tasks": {t.task_id: task_brief(t) for t in changed},
        },
    )


@dataclass
class _Row:
    """A workflow of the list: its latest snapshot, its fold once history comes after it, and
    the position of the last change."""

    snapshot: WorkflowSnapshot | None
    tracked: _Tracked | None
    partition: int
    changed_at: int
    """Offset in ``workflow.events`` of the last event reflected (-1: only the snapshot's)."""
    final: bool = False
    cost: float | None = None


class WorkflowIndex:
    """Every workflow's row, from the latest snapshots plus the history after them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.rows: dict[str, _Row] = {}
        self.positions: dict[int, int] = {}
        """Partition → next offset to read: every row is current up to these."""
        self.count = 0

    def load(self, snapshots: dict[str, WorkflowSnapshot], partitions: int) -> dict[int, int]:
        """Rows from snapshots; per partition, the offset the history must be read from."""
        self.count = partitions
        starts: dict[int, int] = {}
        for workflow_id, snapshot in snapshots.items():
            partition = partition_for(workflow_id, partitions)
            try:
                state = snapshot_state(snapshot)
            except DecisionError:
                state = None
            tracked = _Tracked(Folding(state)) if state is not None else None
            offset = snapshot.history_offset if snapshot.history_offset is not None else -1
            row = _Row(
                snapshot, tracked, partition, offset, final=state is not None and state.is_final
            )
            self.rows[workflow_id] = row
            if row.final:
                continue
            # Read on from the event after the snapshot's, or from where a start marker says
            # the history will land.
            start = offset + 1 if state is not None else max(offset, 0)
            starts[partition] = min(starts.get(partition, start), start)
        return starts

    async def fold(self, record: Any) -> str | None:
        """Fold one ``workflow.events`` record; the id of the workflow it changed, if any."""
        self.positions[record.partition] = record.offset + 1
        if record.key is None:
            return None
        event = await _fetched(self.settings, self.mapper, record)
        if event is None:
            return None
        workflow_id = event.workflow_id
        row = self.rows.get(workflow_id)
        if row is None:
            row = self.rows[workflow_id] = _Row(None, None, record.partition, -1)
        if row.tracked is None and row.final and row.snapshot is not None:
            state = snapshot_state(row.snapshot)  # a finished workflow that moves again
            row.tracked = _Tracked(Folding(state)) if state is not None else None
        if row.tracked is None:
            if not isinstance(event, WorkflowStarted):
                return None
            row.tracked = _Tracked(Folding.started(event))
        elif (event.sequence or 0) <= row.tracked.folding.sequence:
            return None
        else:
            row.tracked.apply(event)
        row.changed_at = record.offset
        return workflow_id

    def row(self, workflow_id: str, now: datetime) -> dict[str, Any] | None:
        """The row as the page shows it (None for a workflow with nothing to show yet)."""
        row = self.rows[workflow_id]
        if row.tracked is not None:
            data = workflow_row(row.tracked.folding, now, cost=row.cost)
            data["done"] = row.tracked.done
        elif row.snapshot is not None:
            data = {
                "workflow_id": workflow_id,
                "status": row.snapshot.status,
                "reason": "",
                "done": None,
                "total": None,
                "started_at": None,
                "ended_at": None,
                "duration_seconds": None,
                "tenant": None,
                "workflow_type": None,
                "cost": row.cost,
                "sequence": row.snapshot.history_sequence,
            }
        else:
            return None
        data["position"] = f"{row.partition}:{row.changed_at}"
        return data

    def changed_since(self, positions: dict[int, int]) -> list[str]:
        """Workflows whose last change lies at or after ``positions`` (all without any)."""
        return [
            workflow_id
            for workflow_id, row in self.rows.items()
            if row.changed_at >= positions.get(row.partition, -1)
        ]


async def build_index(settings: Settings) -> tuple[WorkflowIndex, Any]:
    """A :class:`WorkflowIndex` caught up to the end of the history, and the open reader to
    follow it with (from ``index.positions``)."""
    snapshots = await latest_snapshots(settings)
    topic = settings.topic("workflow.events")
    consumer = reader(settings)
    try:
        with kafka_errors(settings, "connect to Kafka"):
            await consumer.start()
        numbers = await topic_partitions(consumer, settings, topic)
        index = WorkflowIndex(settings)
        starts = index.load(snapshots, len(numbers))
        tps = [TopicPartition(topic, n) for n in numbers]
        limits = await bounds(consumer, settings, tps)
        for tp in tps:
            first, end = limits[tp]
            start = max(first, starts.get(tp.partition, end))
            index.positions[tp.partition] = start
            ranged = cast(
                AsyncGenerator[list[Any], None],
                read_range(consumer, settings, tp, start, limits[tp]),
            )
            async with contextlib.aclosing(ranged):
                async for batch in ranged:
                    for record in batch:
                        await index.fold(record)
    except BaseException:
        await stop_clients(consumer)
        raise
    return index, consumer


async def follow_workflows(
    settings: Settings, *, after: dict[int, int] | None = None
) -> AsyncIterator[Message | None]:
    """Rows of every workflow changed after ``after`` (all rows without it), then each change
    as it comes; None now and then when nothing happens."""
    index, consumer = await build_index(settings)
    try:
        topic = settings.topic("workflow.events")
        with kafka_errors(settings, f"follow {topic}"):
            # (aiokafka hangs in stop() if it comes right after an assign, before any fetch:
            # only a stream that goes on to read assigns.)
            consumer.assign([TopicPartition(topic, p) for p in index.positions])
            for partition, offset in index.positions.items():
                consumer.seek(TopicPartition(topic, partition), offset)
        now = datetime.now(UTC)
        ids = index.changed_since(after) if after is not None else list(index.rows)
        rows = [r for w in ids if (r := index.row(w, now)) is not None]
        yield Message("rows", vector(index.positions), {"rows": rows, "initial": True})
        quiet = _Quiet()
        while True:
            with kafka_errors(settings, "follow the workflows' history"):
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=2_000)
            changed: dict[str, None] = {}
            for records in batch.values():
                for record in records:
                    if (workflow_id := await index.fold(record)) is not None:
                        changed[workflow_id] = None
            if changed:
                now = datetime.now(UTC)
                rows = [r for w in changed if (r := index.row(w, now)) is not None]
                yield Message("rows", vector(index.positions), {"rows": rows})
            if quiet.keepalive_due(bool(changed)):
                yield None
    finally:
        await stop_clients(consumer)
