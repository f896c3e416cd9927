"""Shadow replay: every workflow with history in a time window, folded into a projection beside
the live one, and compared with the live snapshots.

Bounded by offsets looked up by time: pass 1 reads only the window (``since`` … ``until``) and
collects the keys, without decoding; pass 2 reads each partition from its start to ``until``
and folds, decoding only the keys of the window, so that each workflow is folded from its full
history up to ``until``. Events are folded in chunks, with at most ``MAX_PENDING`` decoded
events held at once whatever the topic's size. A snapshot is compared with the shadow state at
the snapshot's own position (the fold is split there), which is where they must be equal —
and at once, so the snapshot is let go. A workflow that reached a final status is kept as its
JSON text (about a tenth of the objects) unless ``keep_states``, and thawed if a later event
(a RetryTask) reopens it: memory follows the workflows in flight, not the whole projection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import DecisionError, EventError
from mesh.events import Mapper, WorkflowEvent, WorkflowSnapshot
from mesh.gctuning import relaxed_gc
from mesh.kafka.history import opened, partition_count, read_snapshots, snapshot_state
from mesh.kafka.reader import bounds, read_bounded
from mesh.replay._diff import Difference, diff_states
from mesh.replay._kafka import NO_TIME_LOOKUP, offsets_for_time
from mesh.settings import Settings
from mesh.workflows import WorkflowState, fold

CHUNK = 1_000
"""Events of one workflow folded at once."""

MAX_PENDING = 50_000
"""Decoded events held across all workflows before everything is folded."""

Progress = Callable[[int, int, int], None]
"""Called with (records read, records to read, events folded) as the replay goes."""


@dataclass
class _Shadow:
    state: WorkflowState | None = None
    frozen: bytes | None = None
    """A final state as JSON text (``state`` is None meanwhile)."""
    frozen_at: tuple[str, int] = ("", 0)
    """The frozen state's status and sequence (what the projection shows, without a thaw)."""
    pending: list[WorkflowEvent] = field(default_factory=list)
    last: int = 0
    snapshot: WorkflowSnapshot | None = None
    """The live snapshot to compare with, until it is compared."""
    differences: list[Difference] | None = None
    """None until compared."""
    problem: str | None = None

    def current(self) -> WorkflowState | None:
        """The state folded so far (thawed if it was frozen)."""
        if self.state is None and self.frozen is not None:
            self.state, self.frozen = WorkflowState.model_validate_json(self.frozen), None
        return self.state


@dataclass
class ShadowResult:
    """The shadow projection, how fast it was built and how it compares with live."""

    since_ms: int | None
    until_ms: int | None
    projection: dict[str, tuple[str, int]]
    """Every replayed workflow's status and sequence."""
    records_read: int
    events_folded: int
    seconds: float
    compared: int = 0
    differences: dict[str, list[Difference]] = field(default_factory=dict)
    not_compared: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    """Workflows whose history does not decode or fold (counted as differing)."""
    notes: list[str] = field(default_factory=list)
    workflows: dict[str, WorkflowState] = field(default_factory=dict)
    """The replayed states themselves, with ``keep_states`` (else empty)."""

    @property
    def events_per_second(self) -> float:
        """Events decoded and folded per second of pass 2."""
        return self.events_folded / self.seconds if self.seconds > 0 else 0.0

    @property
    def differing(self) -> list[str]:
        """Workflows that differ from live or cannot be replayed, sorted."""
        return sorted(set(self.differences) | set(self.problems))


async def shadow_replay(
    settings: Settings,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    compare: bool = True,
    keep_states: bool = True,
    progress: Progress | None = None,
) -> ShadowResult:
    """Fold every workflow with history records timestamped in [``since_ms``, ``until_ms``]
    (None: unbounded) from its full history up to ``until_ms``; compare with live snapshots.
    Without ``keep_states`` only each workflow's status and sequence are kept."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    with relaxed_gc():
        return await _shadow_replay(
            settings, mapper, since_ms, until_ms, compare, keep_states, progress
        )


async def _shadow_replay(
    settings: Settings,
    mapper: Mapper,
    since_ms: int | None,
    until_ms: int | None,
    compare: bool,
    keep_states: bool,
    progress: Progress | None,
) -> ShadowResult:
    async with opened(settings) as consumer:
        count = await partition_count(consumer, settings, "workflow.events")
        topic = settings.topic("workflow.events")
        tps = [TopicPartition(topic, n) for n in range(count)]
        limits = await bounds(consumer, settings, tps)
        notes: list[str] = []
        stops, until_filter = await _stops(consumer, settings, tps, limits, until_ms, notes)
        window = await _window(
            consumer, settings, tps, limits, stops, since_ms, until_filter, notes
        )
        snapshots = {}
        if compare:
            state_topic = settings.topic("workflow.state")
            states = [TopicPartition(state_topic, n) for n in range(count)]
            snapshots = (await read_snapshots(consumer, settings, mapper, states)).latest
        shadows: dict[str, _Shadow] = {}
        for key, snapshot in snapshots.items():
            if window is None or key.encode() in window:
                shadows[key] = _Shadow(snapshot=snapshot)
        del snapshots  # each shadow holds its own until it is compared
        began = time.perf_counter()
        read, folded = await _fold_all(
            consumer,
            settings,
            mapper,
            (tps, limits, stops),
            until_filter,
            window,
            shadows,
            progress,
            freeze=not keep_states,
        )
        seconds = time.perf_counter() - began
    result = ShadowResult(
        since_ms, until_ms, {}, read, folded, seconds, notes=list(dict.fromkeys(notes))
    )
    _conclude(result, shadows, compare=compare, keep=keep_states)
    return result


async def _stops(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    tps: list[TopicPartition],
    limits: dict[TopicPartition, tuple[int, int]],
    until_ms: int | None,
    notes: list[str],
) -> tuple[dict[TopicPartition, int | None], int | None]:
    """Where pass 2 stops per partition (None: its end), and the timestamp to filter by when
    the broker cannot look offsets up by time."""
    stops: dict[TopicPartition, int | None] = dict.fromkeys(tps)
    if until_ms is None:
        return stops, None
    looked = await offsets_for_time(consumer, settings, tps, until_ms + 1, limits)
    if looked is None:
        notes.append(NO_TIME_LOOKUP)
        return stops, until_ms
    return looked, None


async def _window(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    tps: list[TopicPartition],
    limits: dict[TopicPartition, tuple[int, int]],
    stops: dict[TopicPartition, int | None],
    since_ms: int | None,
    until_filter: int | None,
    notes: list[str],
) -> set[bytes] | None:
    """Keys with records in the window (None: every key, when there is no ``since``)."""
    if since_ms is None:
        return None
    looked = await offsets_for_time(consumer, settings, tps, since_ms, limits)
    since_filter = since_ms if looked is None else None
    if looked is None:
        notes.append(NO_TIME_LOOKUP)
    keys: set[bytes] = set()
    for tp in tps:
        start = limits[tp][0] if looked is None else looked[tp]
        if start is None:
            continue  # no record at or after ``since`` in this partition
        async for batch in read_bounded(
            consumer, settings, tp, limits[tp], start=start, stop=stops[tp]
        ):
            for record in batch:
                stamp = record.timestamp
                if since_filter is not None and stamp < since_filter:
                    continue
                if until_filter is not None and stamp > until_filter:
                    continue
                if record.key is not None:
                    keys.add(bytes(record.key))
    return keys


async def _fold_all(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    mapper: Mapper,
    where: tuple[
        list[TopicPartition],
        dict[TopicPartition, tuple[int, int]],
        dict[TopicPartition, int | None],
    ],
    until_filter: int | None,
    window: set[bytes] | None,
    shadows: dict[str, _Shadow],
    progress: Progress | None,
    *,
    freeze: bool,
) -> tuple[int, int]:
    tps, limits, stops = where
    total = sum(
        max(0, (limits[tp][1] if stops[tp] is None else stops[tp] or 0) - limits[tp][0])
        for tp in tps
    )
    read = folded = pending = 0
    for tp in tps:
        async for batch in read_bounded(consumer, settings, tp, limits[tp], stop=stops[tp]):
            read += len(batch)
            for record in batch:
                if window is not None and record.key not in window:
                    continue
                if until_filter is not None and record.timestamp > until_filter:
                    continue
                key = record.key.decode(errors="replace") if record.key is not None else ""
                shadow = shadows.get(key)
                if shadow is None:
                    shadow = shadows[key] = _Shadow()
                if shadow.problem is not None:
                    continue
                try:
                    event = mapper.decode(record.value, record.headers)
                except EventError as exc:
                    shadow.problem = f"record {tp.partition}@{record.offset} unreadable: {exc}"
                    continue
                if not isinstance(event, WorkflowEvent) or event.sequence is None:
                    continue
                if event.sequence <= shadow.last:
                    continue  # a duplicate written without transactions
                shadow.last = event.sequence
                shadow.pending.append(event)
                pending += 1
                folded += 1
                snapshot = shadow.snapshot
                if snapshot is not None and event.sequence == snapshot.history_sequence:
                    pending -= _flush(shadow, freeze=False)
                    _compare(shadow, snapshot)
                elif len(shadow.pending) >= CHUNK:
                    pending -= _flush(shadow, freeze=freeze)
            if pending >= MAX_PENDING:
                pending -= sum(_flush(s, freeze=freeze) for s in shadows.values())
            if progress is not None:
                progress(read, total, folded)
    for shadow in shadows.values():
        _flush(shadow, freeze=freeze)
    if progress is not None:
        progress(read, max(total, read), folded)
    return read, folded


def _flush(shadow: _Shadow, *, freeze: bool) -> int:
    """Fold the shadow's pending events; returns how many were pending. With ``freeze``, a
    final state is kept as JSON text until another event needs it."""
    count = len(shadow.pending)
    if count and shadow.problem is None:
        try:
            shadow.state = fold(shadow.pending, shadow.current())
        except DecisionError as exc:
            shadow.problem = str(exc)
    shadow.pending = []
    state = shadow.state
    if freeze and state is not None and state.is_final and shadow.snapshot is None:
        shadow.frozen, shadow.state = state.model_dump_json().encode(), None
        shadow.frozen_at = (state.status, state.sequence)
    return count


def _compare(shadow: _Shadow, snapshot: WorkflowSnapshot) -> None:
    """Compare the shadow (folded exactly up to the snapshot's position) with the snapshot."""
    shadow.snapshot = None
    if shadow.problem is not None or shadow.state is None:
        return
    try:
        live = snapshot_state(snapshot)
    except DecisionError as exc:
        shadow.differences = [Difference("(state)", str(exc), "a valid state")]
        return
    assert live is not None  # a start marker has sequence 0, never an event's
    shadow.differences = diff_states(live, shadow.state)


def _conclude(
    result: ShadowResult, shadows: dict[str, _Shadow], *, compare: bool, keep: bool
) -> None:
    for workflow_id, shadow in sorted(shadows.items()):
        if shadow.problem is not None:
            result.problems[workflow_id] = shadow.problem
            continue
        state = shadow.current() if keep else shadow.state
        if state is None and shadow.frozen is None:
            continue  # a snapshot whose history lies wholly after the window
        if state is not None:
            result.projection[workflow_id] = (state.status, state.sequence)
            if keep:
                result.workflows[workflow_id] = state
        else:
            result.projection[workflow_id] = shadow.frozen_at
        if not compare:
            continue
        if shadow.differences is not None:
            result.compared += 1
            if shadow.differences:
                result.differences[workflow_id] = shadow.differences
            continue
        snapshot = shadow.snapshot
        if snapshot is None:
            result.not_compared[workflow_id] = "no live snapshot"
        elif snapshot.history_sequence == 0:
            result.not_compared[workflow_id] = "live snapshot is a start marker (no state yet)"
        elif snapshot.history_sequence > shadow.last:
            result.not_compared[workflow_id] = (
                f"live snapshot (sequence {snapshot.history_sequence}) is after the window's "
                f"end (sequence {shadow.last})"
            )
        else:  # a gap in the history: the event the snapshot includes last is missing
            result.compared += 1
            result.differences[workflow_id] = [
                Difference("history_sequence", snapshot.history_sequence, "no such event")
            ]
