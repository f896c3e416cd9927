"""Replay one workflow from ``workflow.events`` and compare it with its live snapshot.

Replay folds the workflow's history with the same ``fold``/``evolve`` the manager uses, so its
result must equal the snapshot the manager wrote at the same history position; any difference
is a bug, and :func:`differences` names each field that differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from mesh.errors import ConfigError, DecisionError, EventError, UnknownWorkflow
from mesh.events import Mapper, WorkflowEvent, WorkflowSnapshot
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import kafka_errors
from mesh.kafka.partitions import cluster_metadata, partition_for
from mesh.kafka.reader import read_range, reader
from mesh.settings import Settings
from mesh.workflows import WorkflowState, fold

_MAX_DIFFERENCES = 200


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
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    events_topic = settings.topic("workflow.events")
    consumer = reader(settings)
    try:
        with kafka_errors(settings, "connect to Kafka"):
            await consumer.start()
        cluster = await cluster_metadata(consumer, settings)
        count = len(cluster.partitions_for_topic(events_topic) or ())
        if not count:
            raise ConfigError(f"topic {events_topic} does not exist; is the topic prefix right?")
        number = partition_for(workflow_id, count)
        history = await _history(consumer, settings, mapper, events_topic, number, workflow_id)
        snapshot = await _snapshot(consumer, settings, mapper, number, workflow_id)
    finally:
        await stop_clients(consumer)
    if not history:
        raise UnknownWorkflow(
            f"workflow {workflow_id} has no history in {events_topic} (partition {number})",
            workflow_id=workflow_id,
        )
    chosen = [e for e in history if until_sequence is None or (e.sequence or 0) <= until_sequence]
    state = _fold(chosen, workflow_id)
    equal: bool | None = None
    found: list[str] = []
    if snapshot is not None and snapshot.history_sequence > 0:
        found = _compare(snapshot, history, workflow_id)
        equal = not found
    return ReplayResult(
        workflow_id=workflow_id,
        state=state,
        event_count=len(chosen),
        events=chosen,
        snapshot=snapshot,
        equal=equal,
        differences=found,
        partition=number,
    )


async def _history(
    consumer: Any,
    settings: Settings,
    mapper: Mapper,
    topic: str,
    number: int,
    workflow_id: str,
) -> list[WorkflowEvent]:
    """The workflow's history in order, each sequence once (the first record of it wins, as in
    a rebuild)."""
    key = workflow_id.encode()
    events: list[WorkflowEvent] = []
    last = 0
    async for records in read_range(consumer, settings, TopicPartition(topic, number)):
        for record in records:
            if record.key != key:
                continue
            try:
                event = mapper.decode(record.value, record.headers)
            except EventError as exc:
                raise EventError(
                    f"history record at {topic}[{number}]@{record.offset} is unreadable: {exc}"
                ) from exc
            if not isinstance(event, WorkflowEvent) or event.sequence is None:
                continue
            if event.sequence <= last:
                continue
            events.append(event)
            last = event.sequence
    return events


async def _snapshot(
    consumer: Any, settings: Settings, mapper: Mapper, number: int, workflow_id: str
) -> WorkflowSnapshot | None:
    key = workflow_id.encode()
    latest: WorkflowSnapshot | None = None
    tp = TopicPartition(settings.topic("workflow.state"), number)
    async for records in read_range(consumer, settings, tp):
        for record in records:
            if record.key != key:
                continue
            if record.value is None:
                latest = None
                continue
            decoded = mapper.decode(record.value, record.headers)
            if isinstance(decoded, WorkflowSnapshot):
                latest = decoded
    return latest


def _fold(events: Sequence[WorkflowEvent], workflow_id: str) -> WorkflowState:
    try:
        state = fold(events)
    except DecisionError as exc:
        raise DecisionError(f"the history of workflow {workflow_id} does not fold: {exc}") from exc
    if state is None:  # pragma: no cover - callers pass at least one event
        raise UnknownWorkflow(f"workflow {workflow_id} has no history")
    return state


def _compare(
    snapshot: WorkflowSnapshot, history: Sequence[WorkflowEvent], workflow_id: str
) -> list[str]:
    at = [e for e in history if (e.sequence or 0) <= snapshot.history_sequence]
    if not at or at[-1].sequence != snapshot.history_sequence:
        reached = at[-1].sequence if at else 0
        return [
            f"history reaches sequence {reached} but the snapshot includes up to "
            f"{snapshot.history_sequence}"
        ]
    replayed = _fold(at, workflow_id)
    try:
        live = WorkflowState.from_snapshot_state(snapshot.state, version=snapshot.state_version)
    except DecisionError as exc:
        return [f"snapshot state unreadable: {exc}"]
    return differences(live.to_snapshot_state(), replayed.to_snapshot_state())


def differences(live: Any, replayed: Any, path: str = "") -> list[str]:
    """Each field path where ``live`` (the snapshot) and ``replayed`` differ, with both values."""
    found: list[str] = []
    _diff(live, replayed, path, found)
    return found


def _diff(live: Any, replayed: Any, path: str, found: list[str]) -> None:
    if len(found) >= _MAX_DIFFERENCES:
        return
    if isinstance(live, Mapping) and isinstance(replayed, Mapping):
        for key in sorted(set(live) | set(replayed), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in live:
                found.append(f"{where}: missing in the snapshot, replay has {replayed[key]!r}")
            elif key not in replayed:
                found.append(f"{where}: snapshot has {live[key]!r}, missing in the replay")
            else:
                _diff(live[key], replayed[key], where, found)
        return
    if isinstance(live, list) and isinstance(replayed, list) and len(live) == len(replayed):
        for index, (a, b) in enumerate(zip(live, replayed, strict=True)):
            _diff(a, b, f"{path}[{index}]", found)
        return
    if live != replayed:
        found.append(f"{path or '(state)'}: snapshot has {live!r}, replay has {replayed!r}")
