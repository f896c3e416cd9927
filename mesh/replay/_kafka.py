"""Reading what replay needs from Kafka: one workflow's history, snapshots, offsets by time.

Reads are group-less and read_committed, and stop at the end each partition had when reading
began (``runtime._reader``), so a replay is a consistent cut even while the mesh runs. Every
value goes through the ``Mapper`` (its size limit included), and a single workflow's history is
capped at ``MAX_HISTORY`` events.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import cast

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import ConfigError, DecisionError, EventError, UnknownWorkflow
from mesh.events import Mapper, WorkflowEvent, WorkflowSnapshot
from mesh.kafka import ConsumedRecord
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import kafka_errors
from mesh.kafka.partitions import cluster_metadata, partition_for
from mesh.kafka.reader import bounds, read_range, reader
from mesh.replay._timeline import Recorded
from mesh.settings import Settings
from mesh.workflows import WorkflowState, fold

MAX_HISTORY = 2_000_000
"""Most events of one workflow held in memory for a replay."""

NO_TIME_LOOKUP = (
    "this broker does not look up offsets by time (the embedded broker's answers are not "
    "exact); records were filtered by their timestamps while reading instead"
)


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
    consumer = reader(settings)
    try:
        with kafka_errors(settings, "connect to Kafka"):
            await consumer.start()
        yield consumer
    finally:
        await stop_clients(consumer)


async def partition_count(consumer: AIOKafkaConsumer, settings: Settings, channel: str) -> int:
    """How many partitions ``channel`` has; ConfigError naming the topic if it is missing."""
    topic = settings.topic(channel)
    cluster = await cluster_metadata(consumer, settings)
    count = len(cluster.partitions_for_topic(topic) or ())
    if not count:
        raise ConfigError(f"topic {topic} does not exist; is the topic prefix right?")
    return count


async def offsets_for_time(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    tps: list[TopicPartition],
    millis: int,
    limits: dict[TopicPartition, tuple[int, int]],
) -> dict[TopicPartition, int | None] | None:
    """Per partition, the first offset whose record timestamp is at or after ``millis`` (None:
    no such record); None altogether when the broker cannot look offsets up by time.

    Each answer is checked against the records it names: Kafka answers with the first record
    at or after ``millis`` (or a transaction marker or aborted record just before it, which a
    read_committed reader skips), while the embedded broker answers -1 or the first offset of
    a record batch whose records may be older than ``millis``, which would cut a replay short.
    """
    with kafka_errors(settings, "look up offsets by time"):
        found = await consumer.offsets_for_times(dict.fromkeys(tps, millis))
    result: dict[TopicPartition, int | None] = {}
    for tp in tps:
        answer = found.get(tp)
        if answer is None:
            result[tp] = None
            continue
        offset = int(answer.offset)
        if answer.timestamp < millis:
            return None
        first = await _first_timestamp(consumer, settings, tp, offset, limits[tp])
        if first is not None and first < millis:
            return None
        result[tp] = offset
    return result


async def _first_timestamp(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    tp: TopicPartition,
    offset: int,
    limits: tuple[int, int],
) -> int | None:
    """The timestamp of the first readable record at or after ``offset`` (None: none)."""
    batches = read_bounded(consumer, settings, tp, limits, start=offset)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            return int(batch[0].timestamp)
    return None


async def read_bounded(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    tp: TopicPartition,
    limits: tuple[int, int],
    *,
    start: int | None = None,
    stop: int | None = None,
) -> AsyncGenerator[list[ConsumedRecord], None]:
    """Batches of ``tp`` from ``start`` (default: the log start) to its end, or only up to
    ``stop`` (exclusive) when given: ``read_range`` may read past the end it was handed (the
    embedded broker's ends are inexact), which a bound taken from a time must not allow."""
    first = limits[0] if start is None else max(start, limits[0])
    if stop is not None and stop <= first:
        return
    # No shortcut when the end equals the start: the embedded broker reports the start of the
    # last record batch as the end, so a partition holding one batch looks empty until fetched.
    # read_range is an async generator: close it when we stop early, not at garbage collection
    ranged = cast(
        AsyncGenerator[list[ConsumedRecord], None],
        read_range(consumer, settings, tp, first, limits),
    )
    async with contextlib.aclosing(ranged) as batches:
        async for batch in batches:
            if stop is None:
                yield batch
                continue
            kept = [r for r in batch if r.offset < stop]
            if kept:
                yield kept
            if len(kept) < len(batch) or batch[-1].offset + 1 >= stop:
                return


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
    """The latest snapshot of the workflow (None if none, or deleted by a tombstone)."""
    key = workflow_id.encode()
    latest: WorkflowSnapshot | None = None
    tp = TopicPartition(settings.topic("workflow.state"), number)
    async for batch in read_range(consumer, settings, tp):
        for record in batch:
            if record.key != key:
                continue
            if record.value is None:
                latest = None
                continue
            decoded = mapper.decode(record.value, record.headers)
            if isinstance(decoded, WorkflowSnapshot):
                latest = decoded
    return latest


async def latest_snapshots(settings: Settings) -> dict[str, WorkflowSnapshot]:
    """The last snapshot of every workflow in ``workflow.state`` (what compaction keeps;
    tombstones delete, unreadable records are skipped)."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    async with opened(settings) as consumer:
        return await all_snapshots(consumer, settings, mapper)


async def all_snapshots(
    consumer: AIOKafkaConsumer, settings: Settings, mapper: Mapper
) -> dict[str, WorkflowSnapshot]:
    """As :func:`latest_snapshots`, on an open reader."""
    count = await partition_count(consumer, settings, "workflow.state")
    topic = settings.topic("workflow.state")
    tps = [TopicPartition(topic, n) for n in range(count)]
    limits = await bounds(consumer, settings, tps)
    latest: dict[str, WorkflowSnapshot] = {}
    for tp in tps:
        async for batch in read_range(consumer, settings, tp, limits=limits[tp]):
            for record in batch:
                key = record.key.decode(errors="replace") if record.key is not None else ""
                if record.value is None:
                    latest.pop(key, None)
                    continue
                try:
                    decoded = mapper.decode(record.value, record.headers)
                except EventError:
                    continue
                if isinstance(decoded, WorkflowSnapshot):
                    latest[decoded.workflow_id] = decoded
    return latest


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
