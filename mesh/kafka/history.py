"""A workflow's history and snapshots as Kafka holds them: the one reader of ``workflow.events``
and ``workflow.state`` (and of the planner's answers on ``plans``, for requests that never
became a workflow).

The Workflow Manager's rebuild and ``get_workflow_status``, replay (``mesh replay``, the shadow
replay), ``mesh status``/``list``/``watch`` and the console all read through here. Reads are
group-less and read_committed, and stop at the end each partition had when reading began
(:func:`mesh.kafka.reader.read_range`), so what they return is a consistent cut even while the
mesh runs. Every value goes through the ``Mapper`` (its size limit included), and a single
workflow's history is capped at ``MAX_HISTORY`` events.

``workflow.state`` holds, per workflow, its latest snapshot (or a start marker: a snapshot with
``history_sequence`` 0 and no state, pointing at where its history starts); a tombstone deletes
a finished workflow. The embedded broker does not compact, so readers take the last record per
key themselves: that is what compaction would leave.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pydantic_core
from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import ConfigError, DecisionError, EventError, UnknownWorkflow
from mesh.events import (
    CHUNK_KEY_SEPARATOR,
    HEADER_TYPE,
    Mapper,
    PlanCreated,
    PlanRejected,
    WorkflowEvent,
    WorkflowSnapshot,
    WorkflowSnapshotChunk,
    WorkflowStarted,
    chunk_key,
)
from mesh.gctuning import relaxed_gc
from mesh.kafka.connection import started
from mesh.kafka.partitions import cluster_metadata, or_hidden, partition_for
from mesh.kafka.payloads import with_plan
from mesh.kafka.reader import bounds, read_bounded, read_range, reader
from mesh.kafka.records import ConsumedRecord
from mesh.log import get_logger
from mesh.settings import Settings
from mesh.workflows import Recorded, WorkflowState, evolve, fold

MAX_HISTORY = 2_000_000
"""Most events of one workflow held in memory for a replay."""

log = get_logger("mesh.kafka.history")

_CHUNK_SEPARATOR = CHUNK_KEY_SEPARATOR.encode()


@dataclass
class History:
    """One workflow's history as read, its latest snapshot, and where the read ended."""

    workflow_id: str
    partition: int
    records: list[Recorded]
    snapshot: WorkflowSnapshot | None
    end_offset: int
    """Offset after the last record read (where following the workflow live goes on)."""
    notes: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A started group-less reader, stopped however the block ends (even a failed start)."""
    async with started(reader(settings), settings) as consumer:
        yield consumer


async def partition_count(consumer: AIOKafkaConsumer, settings: Settings, channel: str) -> int:
    """How many partitions ``channel`` has; ConfigError naming the topic if it is missing."""
    topic = settings.topic(channel)
    cluster = await cluster_metadata(consumer, settings)
    count = len(cluster.partitions_for_topic(topic) or ())
    if not count and settings.security_protocol == "PLAINTEXT":
        raise ConfigError(f"topic {topic} does not exist; is the topic prefix right?")
    if not count:
        raise ConfigError(f"topic {topic} does not exist{or_hidden(settings, [topic])}")
    return count


async def read_history(
    settings: Settings,
    workflow_id: str,
    *,
    until_offset: int | None = None,
    until_ms: int | None = None,
    with_snapshot: bool = True,
) -> History:
    """The workflow's history (up to ``until_offset`` / ``until_ms`` inclusive, when given),
    each sequence once, with its latest snapshot; UnknownWorkflow if it has no history."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    async with opened(settings) as consumer:
        count = await partition_count(consumer, settings, "workflow.events")
        number = partition_for(workflow_id, count)
        tp = TopicPartition(settings.topic("workflow.events"), number)
        limits = (await bounds(consumer, settings, [tp]))[tp]
        notes: list[str] = []
        stop = None if until_offset is None else until_offset + 1
        # --until TIME cuts the workflow's own history at its first event stamped after TIME,
        # read in order. No offset lookup by time: Kafka's answer counts other workflows'
        # records and transaction markers, and timestamps from several producers are not
        # monotonic, so it could cut a different prefix (and the embedded broker's is inexact).
        records, end = await _records(
            consumer, settings, mapper, tp, workflow_id, limits, until_ms, stop=stop
        )
        if until_offset is None and until_ms is None:
            end = max(end, limits[1])
        snapshot = (
            await read_snapshot(consumer, settings, mapper, number, workflow_id)
            if with_snapshot
            else None
        )
    if not records:
        raise UnknownWorkflow(
            f"workflow {workflow_id} has no history in {tp.topic} (partition {number})"
            + (" up to that point" if until_offset is not None or until_ms is not None else ""),
            workflow_id=workflow_id,
        )
    return History(workflow_id, number, records, snapshot, end, notes)


async def _records(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    mapper: Mapper,
    tp: TopicPartition,
    workflow_id: str,
    limits: tuple[int, int],
    filter_ms: int | None,
    *,
    start: int | None = None,
    stop: int | None = None,
) -> tuple[list[Recorded], int]:
    key = workflow_id.encode()
    found: list[Recorded] = []
    last = 0
    end = limits[0] if start is None else max(start, limits[0])
    batches = read_bounded(consumer, settings, tp, limits, start=start, stop=stop)
    with relaxed_gc():
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for record in batch:
                    end = record.offset + 1
                    if record.key != key:
                        continue
                    if filter_ms is not None and record.timestamp > filter_ms:
                        return found, end
                    if (decoded := _decode(mapper, tp, record)) is None or decoded[1] <= last:
                        continue  # not history, or a duplicate written without transactions
                    event, last = decoded
                    event = await with_plan(settings, mapper, event)  # a plan by reference
                    found.append(Recorded(event, record.offset, record.timestamp, record.value))
                    if len(found) > MAX_HISTORY:
                        raise ConfigError(
                            f"workflow {workflow_id} has more than {MAX_HISTORY:,} history events; "
                            "replay a part of it with --until-offset or --until"
                        )
    return found, end


def _decode(
    mapper: Mapper, tp: TopicPartition, record: ConsumedRecord
) -> tuple[WorkflowEvent, int] | None:
    """The history event in ``record`` and its sequence, None if it is not one; EventError names
    the record."""
    try:
        event = mapper.decode(record.value, record.headers)
    except EventError as exc:
        raise EventError(
            f"history record at {tp.topic}[{tp.partition}]@{record.offset} is unreadable: {exc}"
        ) from exc
    if not isinstance(event, WorkflowEvent) or event.sequence is None:
        return None
    return event, event.sequence


async def read_snapshot(
    consumer: AIOKafkaConsumer, settings: Settings, mapper: Mapper, number: int, workflow_id: str
) -> WorkflowSnapshot | None:
    """The latest snapshot of the workflow (None if none, or deleted by a tombstone), its state
    joined from its chunks when it was written in chunks."""
    tp = TopicPartition(settings.topic("workflow.state"), number)
    key = workflow_id.encode()
    prefix = (workflow_id + CHUNK_KEY_SEPARATOR).encode()
    latest: ConsumedRecord | None = None
    pieces: dict[bytes, ConsumedRecord] = {}
    async for records in read_range(consumer, settings, tp):
        for record in records:
            if record.key == key:
                latest = record if record.value is not None else None
            elif record.key is not None and record.key.startswith(prefix):
                _keep_piece(pieces, record.key, record)
    if latest is None or latest.value is None:
        return None
    decoded = mapper.decode(latest.value, latest.headers)
    if not isinstance(decoded, WorkflowSnapshot):
        return None
    return _joined(mapper, decoded, pieces)


def _keep_piece(pieces: dict[bytes, ConsumedRecord], key: bytes, record: ConsumedRecord) -> None:
    """Keep the latest record of a chunk key (a tombstone deletes it), as compaction would."""
    if record.value is None:
        pieces.pop(key, None)
    else:
        pieces[key] = record


def _joined(
    mapper: Mapper, snapshot: WorkflowSnapshot, pieces: Mapping[bytes, ConsumedRecord]
) -> WorkflowSnapshot:
    """``snapshot`` with its state joined from its chunks (as is when it has none). With a
    chunk missing or unreadable its state stays empty, which readers refuse as unreadable
    (and fold the workflow from its history instead)."""
    if not snapshot.chunks or snapshot.snapshot_id is None:
        return snapshot
    text: list[str] = []
    for index in range(snapshot.chunks):
        key = chunk_key(snapshot.workflow_id, snapshot.snapshot_id, index)
        record = pieces.get(key.encode())
        try:
            chunk = mapper.decode(record.value, record.headers) if record is not None else None
        except EventError as exc:
            log.error("snapshot chunk unreadable", key=key, error=str(exc))
            chunk = None
        if not isinstance(chunk, WorkflowSnapshotChunk) or chunk.count != snapshot.chunks:
            log.error(
                "snapshot incomplete",
                workflow_id=snapshot.workflow_id,
                snapshot_id=snapshot.snapshot_id,
                missing=index,
                chunks=snapshot.chunks,
            )
            return snapshot
        text.append(chunk.data)
    try:
        state = pydantic_core.from_json("".join(text))
    except ValueError as exc:
        log.error("snapshot chunks do not join", workflow_id=snapshot.workflow_id, error=str(exc))
        return snapshot
    if not isinstance(state, dict):
        return snapshot
    return snapshot.model_copy(update={"state": state})


@dataclass
class Snapshots:
    """What ``workflow.state`` holds for the workflows of some partitions."""

    latest: dict[str, WorkflowSnapshot] = field(default_factory=dict)
    """The last snapshot (or start marker) per workflow."""
    deleted: set[str] = field(default_factory=set)
    """Workflows whose last record is a tombstone."""
    unreadable: set[str] = field(default_factory=set)
    """Workflows whose records are all unreadable (they must be folded from their start)."""
    high_water: int | None = None
    """The furthest history offset any snapshot record recorded."""


async def read_snapshots(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    mapper: Mapper,
    tps: Iterable[TopicPartition],
    limits: Mapping[TopicPartition, tuple[int, int]] | None = None,
) -> Snapshots:
    """The snapshots in partitions ``tps`` of ``workflow.state``, read to their ends (``limits``
    as :func:`mesh.kafka.reader.bounds` gives them, else asked now); unreadable records are
    logged and skipped."""
    tps = list(tps)
    if limits is None:
        limits = await bounds(consumer, settings, tps)
    found = Snapshots()
    unreadable: set[str] = set()
    pieces: dict[bytes, ConsumedRecord] = {}
    for tp in tps:
        async for records in read_range(consumer, settings, tp, 0, limits[tp]):
            for record in records:
                if record.key is not None and _CHUNK_SEPARATOR in record.key:
                    _keep_piece(pieces, record.key, record)
                    continue
                key = record.key.decode(errors="replace") if record.key is not None else ""
                if record.value is None:
                    found.latest.pop(key, None)
                    unreadable.discard(key)
                    found.deleted.add(key)
                    continue
                try:
                    snapshot = mapper.decode(record.value, record.headers)
                except EventError as exc:
                    log.error("snapshot unreadable", offset=record.offset, error=str(exc))
                    unreadable.add(key)
                    continue
                if not isinstance(snapshot, WorkflowSnapshot):
                    continue
                found.latest[key] = snapshot
                found.deleted.discard(key)
                if snapshot.history_offset is not None:
                    found.high_water = max(found.high_water or 0, snapshot.history_offset)
    found.unreadable = unreadable - found.latest.keys()
    for key, snapshot in found.latest.items():
        if snapshot.chunks:
            found.latest[key] = _joined(mapper, snapshot, pieces)
    return found


async def latest_snapshots(settings: Settings) -> dict[str, WorkflowSnapshot]:
    """The last snapshot of every workflow in ``workflow.state`` (what compaction keeps;
    tombstones delete, unreadable records are skipped)."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    async with opened(settings) as consumer:
        count = await partition_count(consumer, settings, "workflow.state")
        topic = settings.topic("workflow.state")
        tps = [TopicPartition(topic, n) for n in range(count)]
        return (await read_snapshots(consumer, settings, mapper, tps)).latest


def snapshot_state(snapshot: WorkflowSnapshot | None) -> WorkflowState | None:
    """The state a snapshot holds (None for none or a start marker); DecisionError if bad."""
    if snapshot is None or snapshot.history_sequence == 0:
        return None
    return WorkflowState.from_snapshot_state(snapshot.state, version=snapshot.state_version)


@dataclass
class Live:
    """A workflow as the manager has it now: latest snapshot plus the history after it."""

    state: WorkflowState
    snapshot: WorkflowSnapshot | None
    tail: list[Recorded]
    """History events after the snapshot (all of them without a usable snapshot)."""
    partition: int
    end_offset: int


async def live_state(settings: Settings, workflow_id: str) -> Live:
    """Fold the events after the latest snapshot onto it, as a rebuilding manager would.

    The history is read from the snapshot's offset when it has one, else from the start.
    """
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    async with opened(settings) as consumer:
        count = await partition_count(consumer, settings, "workflow.events")
        number = partition_for(workflow_id, count)
        snapshot = await read_snapshot(consumer, settings, mapper, number, workflow_id)
        try:
            base = snapshot_state(snapshot)
        except DecisionError:
            base = None  # unreadable snapshot: the history alone still rebuilds it
        tp = TopicPartition(settings.topic("workflow.events"), number)
        limits = (await bounds(consumer, settings, [tp]))[tp]
        start = limits[0]
        if base is not None and snapshot is not None and snapshot.history_offset is not None:
            start = max(start, snapshot.history_offset + 1)
        tail, end = await _records(
            consumer, settings, mapper, tp, workflow_id, limits, None, start=start
        )
        end = max(end, limits[1])
    fresh = [r for r in tail if base is None or (r.event.sequence or 0) > base.sequence]
    if base is None and not fresh:
        raise UnknownWorkflow(
            f"workflow {workflow_id} has no history in {tp.topic} (partition {number})",
            workflow_id=workflow_id,
        )
    try:
        state = fold((r.event for r in fresh), base)
    except DecisionError as exc:
        raise DecisionError(f"the history of workflow {workflow_id} does not fold: {exc}") from exc
    assert state is not None  # a base state or at least one event
    return Live(state, snapshot, fresh, number, end)


async def recorded_status(settings: Settings, workflow_id: str) -> str | None:
    """What ``workflow.state`` records of ``workflow_id``: the status of its latest snapshot
    (``running`` for a start marker), ``deleted`` if a tombstone removed it after its grace
    period, None if it never started. One partition of the compacted topic is read, not the
    history: every started workflow has a marker or snapshot there."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    key = workflow_id.encode()
    status: str | None = None
    async with opened(settings) as consumer:
        count = await partition_count(consumer, settings, "workflow.state")
        tp = TopicPartition(settings.topic("workflow.state"), partition_for(workflow_id, count))
        async for batch in read_range(consumer, settings, tp):
            for record in batch:
                if record.key != key:
                    continue
                if record.value is None:
                    status = "deleted"
                    continue
                try:
                    snapshot = mapper.decode(record.value, record.headers)
                except EventError:
                    status = status or "unknown"  # unreadable, but it exists
                    continue
                if isinstance(snapshot, WorkflowSnapshot):
                    status = snapshot.status
    return status


@dataclass
class Current:
    """A workflow of :func:`current_workflows`: its latest snapshot with the history after it
    folded on, as a rebuilding manager would have it."""

    workflow_id: str
    partition: int
    snapshot: WorkflowSnapshot | None
    state: WorkflowState | None
    """None only when the snapshot's state is unreadable and no history could be folded."""

    @property
    def status(self) -> str:
        if self.state is not None:
            return "running" if self.state.status == "pending" else self.state.status
        return self.snapshot.status if self.snapshot is not None else "unknown"


async def current_workflows(settings: Settings) -> dict[str, Current]:
    """Every workflow now: its latest snapshot (what compaction keeps) plus the history after
    it, so a pause, a retry or a task's progress since the last snapshot shows.

    Per partition the history is read once, from the earliest position an unfinished workflow
    needs: a finished workflow's snapshot is exact until it moves again (a retry), and the
    manager snapshots it then, so only the events after the oldest such position matter.
    """
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    found: dict[str, Current] = {}
    async with opened(settings) as consumer:
        count = await partition_count(consumer, settings, "workflow.state")
        states = [TopicPartition(settings.topic("workflow.state"), n) for n in range(count)]
        snapshots = (await read_snapshots(consumer, settings, mapper, states)).latest
        starts: dict[int, int] = {}
        for workflow_id, snapshot in snapshots.items():
            number = partition_for(workflow_id, count)
            try:
                state = snapshot_state(snapshot)
            except DecisionError:
                state = None  # unreadable state: the snapshot's own fields still say a lot
            found[workflow_id] = Current(workflow_id, number, snapshot, state)
            if state is not None and state.is_final:
                continue
            offset = snapshot.history_offset
            # After the snapshot's last event, or from where a start marker says it begins.
            start = (offset + 1 if state is not None else offset) if offset is not None else 0
            starts[number] = min(starts.get(number, start), start)
        events = settings.topic("workflow.events")
        tps = [TopicPartition(events, n) for n in sorted(starts)]
        limits = await bounds(consumer, settings, tps)
        with relaxed_gc():
            for tp in tps:
                start = starts[tp.partition]
                batches = read_bounded(consumer, settings, tp, limits[tp], start=start)
                async with contextlib.aclosing(batches):
                    async for batch in batches:
                        for record in batch:
                            _fold_into(found, mapper, tp, record)
    return found


def _fold_into(
    found: dict[str, Current], mapper: Mapper, tp: TopicPartition, record: ConsumedRecord
) -> None:
    """Fold one history record onto its workflow in ``found`` (if it moves it on)."""
    if record.key is None:
        return
    try:
        decoded = _decode(mapper, tp, record)
    except EventError as exc:  # the Workflow Manager dead-letters what it cannot read
        log.warning("history record unreadable", offset=record.offset, error=str(exc))
        return
    if decoded is None:
        return
    event, sequence = decoded
    current = found.get(event.workflow_id)
    if current is None:
        if not isinstance(event, WorkflowStarted):
            return  # deleted (a tombstone after its grace period), or not begun here
        current = found[event.workflow_id] = Current(event.workflow_id, tp.partition, None, None)
    if current.state is None and not isinstance(event, WorkflowStarted):
        return  # nothing to fold onto: the snapshot's fields stand
    if current.state is not None and sequence <= current.state.sequence:
        return  # in the snapshot already, or a duplicate written without transactions
    try:
        current.state = evolve(current.state, event)
    except DecisionError as exc:
        log.warning("history does not fold", workflow_id=event.workflow_id, error=str(exc))


@dataclass(frozen=True)
class Rejection:
    """The Task Planner's refusal of a request: its workflow never started."""

    workflow_id: str
    request_id: str
    reason: str
    problems: tuple[str, ...]
    at: datetime


async def rejections(settings: Settings, workflow_id: str | None = None) -> dict[str, Rejection]:
    """Requests whose latest answer on ``plans`` is a ``PlanRejected``, by workflow id (only
    ``workflow_id``'s partition when given). Records are chosen by their type header before
    anything is decoded, so the plans themselves cost nothing to skip."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    wanted = {"plan.created", "plan.rejected"}
    latest: dict[str, PlanCreated | PlanRejected] = {}
    async with opened(settings) as consumer:
        count = await partition_count(consumer, settings, "plans")
        numbers = range(count) if workflow_id is None else [partition_for(workflow_id, count)]
        tps = [TopicPartition(settings.topic("plans"), n) for n in numbers]
        limits = await bounds(consumer, settings, tps)
        for tp in tps:
            async for batch in read_range(consumer, settings, tp, 0, limits[tp]):
                for record in batch:
                    if record.key is None or (
                        workflow_id is not None and record.key != workflow_id.encode()
                    ):
                        continue
                    kind = dict(record.headers or ()).get(HEADER_TYPE, b"").decode(errors="replace")
                    if kind not in wanted:
                        continue
                    try:
                        answer = mapper.decode(record.value, record.headers)
                    except EventError:
                        continue  # the Workflow Manager dead-letters it
                    if isinstance(answer, PlanCreated | PlanRejected):
                        latest[answer.workflow_id] = answer
    return {
        key: Rejection(
            key, answer.request_id, answer.reason, tuple(answer.problems), answer.occurred_at
        )
        for key, answer in latest.items()
        if isinstance(answer, PlanRejected)
    }


__all__ = [
    "MAX_HISTORY",
    "Current",
    "History",
    "Live",
    "Rejection",
    "Snapshots",
    "current_workflows",
    "latest_snapshots",
    "live_state",
    "opened",
    "partition_count",
    "read_history",
    "read_snapshot",
    "read_snapshots",
    "recorded_status",
    "rejections",
    "snapshot_state",
]
