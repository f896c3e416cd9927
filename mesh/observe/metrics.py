"""Every metric mesh exports, in one registry, named by OpenTelemetry's messaging conventions in
Prometheus spelling where one exists (``messaging.client.consumed.messages`` →
``messaging_client_consumed_messages_total``), ``mesh_`` otherwise.

Labels stay bounded: topics, consumer groups, states, pools, origins, reasons and agent ids (the
fleet bounds them), never a workflow or task id. Hooks are called per batch, not per record, so a
busy consumer pays a few dictionary look-ups a poll. Nothing here serves HTTP
(:mod:`mesh.observe.serve` does): importing this module costs no port and no thread.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# ``*_created`` series would double the series count and say little.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
"""mesh's own registry (not the client's global one, which tests and libraries share)."""

_TOPIC = "messaging_destination_name"
_GROUP = "messaging_consumer_group_name"
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)

CONSUMED = Counter(
    "messaging_client_consumed_messages",
    "Records a consumer handed to the component, by topic and consumer group.",
    [_TOPIC, _GROUP],
    registry=REGISTRY,
)
SENT = Counter(
    "messaging_client_sent_messages",
    "Records the component queued to the producer, by topic.",
    [_TOPIC],
    registry=REGISTRY,
)
PROCESS_DURATION = Histogram(
    "messaging_process_duration_seconds",
    "Time to handle one consumed batch (decide and write, or handle each record).",
    [_GROUP],
    buckets=_SECONDS,
    registry=REGISTRY,
)
BATCH_RECORDS = Histogram(
    "mesh_batch_records",
    "Records per consumed batch.",
    [_GROUP],
    buckets=_SIZES,
    registry=REGISTRY,
)
TRANSACTIONS = Counter(
    "mesh_transactions",
    "Kafka transactions of a partition loop, committed or aborted.",
    [_GROUP, "outcome"],
    registry=REGISTRY,
)
REBUILD_DURATION = Histogram(
    "mesh_rebuild_duration_seconds",
    "Time to fence, rebuild and resume newly assigned partitions.",
    [_GROUP],
    buckets=_LATENCY,
    registry=REGISTRY,
)
WORKFLOWS_REBUILT = Counter(
    "mesh_workflows_rebuilt",
    "Workflows whose state was rebuilt on adopting a partition.",
    registry=REGISTRY,
)
TASKS = Counter(
    "mesh_task_transitions",
    "Tasks entering a state, as the Workflow Manager decided it (completed, failed, ready …).",
    ["state"],
    registry=REGISTRY,
)
WORKFLOW_TRANSITIONS = Counter(
    "mesh_workflow_transitions",
    "Workflows entering a status, as the Workflow Manager decided it (started, completed …).",
    ["status"],
    registry=REGISTRY,
)
READY_TO_ASSIGNED = Histogram(
    "mesh_task_ready_to_assigned_seconds",
    "From TaskReady to the task's assignment to an agent.",
    buckets=_LATENCY,
    registry=REGISTRY,
)
ASSIGNED_TO_COMPLETED = Histogram(
    "mesh_task_assigned_to_completed_seconds",
    "From a task's assignment to its result.",
    buckets=_LATENCY,
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "mesh_dead_letters",
    "Records sent to the dead-letter topic, by the component that sent them and reason "
    "(the error class).",
    ["origin", "reason"],
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "mesh_breaker_state",
    "An agent's circuit breaker: 0 closed, 1 half-open, 2 open.",
    ["agent"],
    registry=REGISTRY,
)

BREAKER_STATES = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}


class _Partition(Protocol):
    topic: str
    partition: int


class _Record(Protocol):
    @property
    def offset(self) -> int: ...


def consumed(group: str, batch: Mapping[Any, Sequence[_Record]]) -> None:
    """Count a batch (``getmany``'s mapping of partition to records) and note the positions it
    leaves, for the lag."""
    if not batch:
        return
    topics: Tally[str] = Tally()
    size = 0
    positions = _positions(group)
    for tp, records in batch.items():
        if records:
            topics[tp.topic] += len(records)
            size += len(records)
            positions[(tp.topic, tp.partition)] = records[-1].offset + 1
    for topic, count in topics.items():
        CONSUMED.labels(topic, group).inc(count)
    if size:
        BATCH_RECORDS.labels(group).observe(size)


def consumed_records(group: str, records: Iterable[Any]) -> None:
    """Count records handed one by one or as a list (FastStream), each with topic, partition
    and offset."""
    topics: Tally[str] = Tally()
    positions = _positions(group)
    size = 0
    for record in records:
        topics[record.topic] += 1
        size += 1
        positions[(record.topic, record.partition)] = record.offset + 1
    for topic, count in topics.items():
        CONSUMED.labels(topic, group).inc(count)
    if size:
        BATCH_RECORDS.labels(group).observe(size)


def sent(channels: Iterable[str], topic_of: Any = None) -> None:
    """Count queued records by topic (``topic_of`` maps a channel to its topic)."""
    tally = Tally(channels)
    for channel, count in tally.items():
        SENT.labels(topic_of(channel) if topic_of is not None else channel).inc(count)


def decided(history: Iterable[Any]) -> None:
    """Count the task and workflow transitions in a written round's history (records whose
    first header names the event type, ``task.completed`` …)."""
    tally: Tally[bytes] = Tally()
    for record in history:
        headers = record.headers
        if headers and headers[0][0] == "mesh-type":
            tally[headers[0][1]] += 1
    for kind, count in tally.items():
        family, _, state = kind.decode().partition(".")
        if family == "task":
            TASKS.labels(state).inc(count)
        elif family == "workflow":
            WORKFLOW_TRANSITIONS.labels(state).inc(count)


def since(histogram: Histogram, occurred_at: datetime) -> None:
    """Observe the seconds from ``occurred_at`` (an event's time) until now."""
    histogram.observe(max(0.0, (datetime.now(UTC) - occurred_at).total_seconds()))


def dead_lettered(origin: str, reason: str) -> None:
    DEAD_LETTERS.labels(origin, reason).inc()


def breaker_changed(agent: str, state: str) -> None:
    BREAKER_STATE.labels(agent).set(BREAKER_STATES.get(state, 2))


# -- gauges read at scrape time -------------------------------------------------------------------

Sample = Callable[[], Mapping[str, float]]
_samples: dict[str, tuple[str, str, list[weakref.WeakMethod[Sample]]]] = {}


def sample(name: str, documentation: str, label: str, source: Sample) -> None:
    """Report gauge ``name`` as ``source()`` (a bound method: value per ``label`` value) at
    every scrape, for as long as its object lives; the values of several live objects (a
    component rebuilt after a broker fault) add up."""
    with _lock:
        _, _, sources = _samples.setdefault(name, (documentation, label, []))
        sources.append(weakref.WeakMethod(source))


def count_workflows(source: Sample) -> None:
    """``mesh_workflows``: workflows a Workflow Manager holds, by status."""
    sample(
        "mesh_workflows",
        "Workflows a Workflow Manager holds in memory, by status (a finished one leaves "
        "memory once its final snapshot is written).",
        "status",
        source,
    )


class _SampleCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        with _lock:
            wanted = []
            for name, (documentation, label, sources) in _samples.items():
                sources[:] = [ref for ref in sources if ref() is not None]
                wanted.append((name, documentation, label, [ref() for ref in sources]))
        for name, documentation, label, live in wanted:
            family = GaugeMetricFamily(name, documentation, labels=[label])
            totals: dict[str, float] = {}
            for source in live:
                if source is not None:
                    for key, count in _retried(source).items():
                        totals[key] = totals.get(key, 0.0) + count
            for key, count in sorted(totals.items()):
                family.add_metric([key], count)
            yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def _retried(source: Sample) -> Mapping[str, float]:
    """``source()``, read from the server's thread while the event loop changes what it counts:
    a dictionary that changed size meanwhile is read again."""
    for _ in range(5):
        try:
            return source()
        except RuntimeError:
            continue
    return {}


# -- consumer lag ----------------------------------------------------------------------------------


class _Consumer(Protocol):
    def assignment(self) -> set[Any]: ...
    def highwater(self, partition: Any) -> int | None: ...
    def last_stable_offset(self, partition: Any) -> int | None: ...


_lock = threading.Lock()
_watched: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_consumed_to: dict[str, dict[tuple[str, int], int]] = {}


def _positions(group: str) -> dict[tuple[str, int], int]:
    positions = _consumed_to.get(group)
    if positions is None:
        with _lock:
            positions = _consumed_to.setdefault(group, {})
    return positions


def watch(consumer: _Consumer, group: str) -> None:
    """Report ``consumer``'s lag per assigned partition as ``group``'s at every scrape.

    The lag is the end offset the consumer last saw in a fetch response (the last stable offset
    under read_committed, else the high watermark) minus the position after the last record
    handed to the component (before any: the consumer's fetch position): no extra request to
    the broker. A partition the consumer has not fetched yet has no series.
    """
    if _watched.get(consumer) == group:  # called per batch by some hooks: no lock then
        return
    with _lock:
        _watched[consumer] = group
    _positions(group)


class _LagCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mesh_consumer_lag_records",
            "Records after a consumer group's position, per assigned partition.",
            labels=[_GROUP, _TOPIC, "messaging_destination_partition_id"],
        )
        with _lock:
            watched = list(_watched.items())
        for consumer, group in watched:
            for key, lag in _lags(consumer, _consumed_to.get(group, {})):
                family.add_metric([group, key[0], str(key[1])], lag)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def _lags(consumer: _Consumer, positions: Mapping[tuple[str, int], int]) -> list[Any]:
    try:
        assigned = list(consumer.assignment())
    except Exception:  # a rebalance or a shutdown under way: nothing to say this scrape
        return []
    out = []
    for tp in assigned:
        try:
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
        except Exception:  # revoked since assignment() answered
            end = None
        if end is None:
            continue
        key = (tp.topic, tp.partition)
        position = positions.get(key)
        if position is None:
            position = _fetch_position(consumer, tp)
        if position is not None:
            out.append((key, max(0, end - position)))
    return out


def _fetch_position(consumer: Any, tp: Any) -> int | None:
    """The consumer's fetch position in ``tp`` if it has one now, read without awaiting
    (aiokafka's ``position()`` is a coroutine that may wait; its state answers at once)."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
        return int(state.position) if state is not None and state.has_valid_position else None
    except Exception:  # another aiokafka, or a rebalance under way: no position this scrape
        return None


REGISTRY.register(_LagCollector())
REGISTRY.register(_SampleCollector())

__all__ = [
    "ASSIGNED_TO_COMPLETED",
    "BATCH_RECORDS",
    "BREAKER_STATE",
    "CONSUMED",
    "DEAD_LETTERS",
    "PROCESS_DURATION",
    "READY_TO_ASSIGNED",
    "REBUILD_DURATION",
    "REGISTRY",
    "SENT",
    "TASKS",
    "TRANSACTIONS",
    "WORKFLOWS_REBUILT",
    "WORKFLOW_TRANSITIONS",
    "breaker_changed",
    "consumed",
    "consumed_records",
    "count_workflows",
    "dead_lettered",
    "decided",
    "sample",
    "sent",
    "since",
    "watch",
]
