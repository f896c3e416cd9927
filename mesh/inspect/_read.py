"""Reading topics by hand for the operator tools: which topic, where to start, where the end is.

Three broker facts shape this module:

- The embedded broker answers ListOffsets(latest) with the start of the last record batch, not the
  end of the log, so :func:`log_ends` also takes the last stable offset from one fetch response and
  keeps the larger (as the Workflow Manager's reader does).
- The embedded broker answers offsets-by-timestamp with the first offset whatever the time, so
  :func:`offsets_at` checks every answer (the record found must not be older than asked) and says
  the broker cannot do it rather than start at a wrong place.
- Asking metadata for a named topic may create it on some brokers, so topics are looked up in the
  full topic list.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import BrokerError, ConfigError, UnsupportedByBroker
from mesh.kafka import ConsumedRecord
from mesh.kafka.connection import client_kwargs, kafka_errors, started
from mesh.kafka.partitions import cluster_metadata
from mesh.settings import Settings
from mesh.times import format_time

MAX_FETCH_BYTES = 4 * 1024 * 1024
"""Per-partition fetch size: above the largest record a mesh topic allows (the DLQ's 2 MiB)."""

_POLL_MS = 200


def new_reader(settings: Settings, *, group_id: str | None = None) -> AIOKafkaConsumer:
    """A consumer for reading partitions by hand (no group unless committing; read_committed, so
    aborted transactional records never show)."""
    return AIOKafkaConsumer(
        **client_kwargs(settings),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=MAX_FETCH_BYTES,
        fetch_max_wait_ms=100,
    )


@contextlib.asynccontextmanager
async def reading(
    settings: Settings, *, group_id: str | None = None
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started reader, stopped on the way out even if starting failed or was cancelled."""
    async with started(new_reader(settings, group_id=group_id), settings) as consumer:
        yield consumer


async def topic_partitions(consumer: AIOKafkaConsumer, settings: Settings) -> dict[str, int]:
    """Every topic of the cluster and its partition count (internal topics left out)."""
    cluster = await cluster_metadata(consumer, settings)
    found: dict[str, int] = {}
    for topic in cluster.topics(exclude_internal_topics=True):
        partitions = cluster.partitions_for_topic(topic) or set()
        found[topic] = len(partitions)
    return found


async def resolve_topic(
    consumer: AIOKafkaConsumer, settings: Settings, name: str
) -> tuple[str, int]:
    """The full name and partition count of ``name``: a logical name (``workflow.events``) under
    the prefix, or a full topic name. ``ConfigError`` naming the mesh's topics if neither exists."""
    topics = await topic_partitions(consumer, settings)
    for candidate in (settings.topic(name), name):
        if topics.get(candidate):
            return candidate, topics[candidate]
    ours = sorted(
        t.removeprefix(settings.topic_prefix) for t in topics if t.startswith(settings.topic_prefix)
    )
    hint = (
        f"topics under {settings.topic_prefix!r}: {', '.join(ours)}"
        if ours
        else (f"no topics under {settings.topic_prefix!r}; run 'mesh topics apply'")
    )
    raise ConfigError(f"no topic {name!r} (nor {settings.topic(name)!r}); {hint}")


async def log_ends(
    consumer: AIOKafkaConsumer, settings: Settings, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The end offset of each partition now: what a read "until the end" stops at."""
    wanted = list(tps)
    if not wanted:
        return {}
    with kafka_errors(settings, "read end offsets"):
        listed = {tp: int(offset) for tp, offset in (await consumer.end_offsets(wanted)).items()}
        # The partitions stay assigned: aiokafka 0.14's stop() hangs after assign([]) once a
        # fetch has been made, and every caller assigns what it reads next anyway.
        consumer.assign(wanted)
        for tp in wanted:
            consumer.seek(tp, listed[tp])
        deadline = time.monotonic() + settings.request_timeout_ms / 1000
        seen: dict[TopicPartition, int] = {}
        while len(seen) < len(wanted) and time.monotonic() < deadline:
            await consumer.getmany(*wanted, timeout_ms=20, max_records=1)
            for tp in wanted:
                stable = consumer.last_stable_offset(tp)
                if stable is not None:
                    seen[tp] = int(stable)
    return {tp: max(listed[tp], seen.get(tp, listed[tp])) for tp in wanted}


async def log_starts(
    consumer: AIOKafkaConsumer, settings: Settings, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The first offset still in each partition."""
    wanted = list(tps)
    if not wanted:
        return {}
    with kafka_errors(settings, "read start offsets"):
        return {tp: int(o) for tp, o in (await consumer.beginning_offsets(wanted)).items()}


async def offsets_at(
    consumer: AIOKafkaConsumer, settings: Settings, tps: Iterable[TopicPartition], at_ms: int
) -> dict[TopicPartition, int]:
    """For each partition, the first offset whose record is not older than ``at_ms`` (its end if
    none is). ``UnsupportedByBroker`` when the broker's answer is wrong (the embedded broker)."""
    wanted = list(tps)
    if not wanted:
        return {}
    with kafka_errors(settings, "look up offsets by timestamp"):
        found = await consumer.offsets_for_times(dict.fromkeys(wanted, at_ms))
    ends = await log_ends(consumer, settings, wanted)
    offsets: dict[TopicPartition, int] = {}
    for tp in wanted:
        answer = found.get(tp)
        if answer is None or answer.offset < 0:
            offsets[tp] = ends[tp]
            continue
        if answer.timestamp < at_ms:
            when = format_time(answer.timestamp) if answer.timestamp >= 0 else "no time"
            raise UnsupportedByBroker(
                f"the broker answered offsets by timestamp wrongly ({tp.topic}[{tp.partition}] "
                f"offset {answer.offset} has {when}, before {format_time(at_ms)}); the embedded "
                "broker cannot look up offsets by time: use Apache Kafka, or give offsets instead"
            )
        offsets[tp] = int(answer.offset)
    return offsets


async def read_records(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int] | None = None,
    *,
    poll_ms: int = _POLL_MS,
) -> AsyncGenerator[ConsumedRecord, None]:
    """Records of the partitions in ``starts`` from those offsets; with ``ends``, stop once every
    partition reached its end (``BrokerError`` if a read stops making progress), else follow for
    ever. Positions, not records, decide the end: transaction markers are never returned."""
    active = [tp for tp in starts if ends is None or starts[tp] < ends[tp]]
    if not active:
        return
    with kafka_errors(settings, "read records"):
        consumer.assign(active)
        for tp in active:
            consumer.seek(tp, starts[tp])
    patience = settings.request_timeout_ms / 1000
    last_progress = time.monotonic()
    positions = dict(starts)
    while active:
        with kafka_errors(settings, "read records"):
            batch = await consumer.getmany(*active, timeout_ms=poll_ms, max_records=500)
        for tp, records in batch.items():
            for record in records:
                if ends is None or record.offset < ends[tp]:
                    yield record
        if ends is None:
            continue
        moved = False
        for tp in list(active):
            with kafka_errors(settings, "read records"):
                position = await consumer.position(tp)
            if position > positions[tp]:
                positions[tp], moved = position, True
            if position >= ends[tp]:
                active.remove(tp)
        if moved:
            last_progress = time.monotonic()
        elif active and time.monotonic() - last_progress > patience:
            tp = active[0]
            raise BrokerError(
                f"reading {tp.topic}[{tp.partition}] stalled at offset {positions[tp]} "
                f"(end {ends[tp]}); is the broker healthy?"
            )
        if active and set(active) != set(consumer.assignment()):
            with kafka_errors(settings, "read records"):
                consumer.assign(active)
                for tp in active:
                    consumer.seek(tp, positions[tp])


async def fetch_one(
    consumer: AIOKafkaConsumer, settings: Settings, tp: TopicPartition, offset: int
) -> ConsumedRecord | None:
    """The record at ``offset`` of ``tp``, or None if the log no longer (or never) had it."""
    starts = await log_starts(consumer, settings, [tp])
    ends = await log_ends(consumer, settings, [tp])
    if not starts[tp] <= offset < ends[tp]:
        return None
    async with contextlib.aclosing(
        read_records(consumer, settings, {tp: offset}, {tp: offset + 1})
    ) as records:
        async for record in records:
            if record.offset == offset:
                return record
    return None


__all__ = [
    "MAX_FETCH_BYTES",
    "fetch_one",
    "log_ends",
    "log_starts",
    "new_reader",
    "offsets_at",
    "read_records",
    "reading",
    "resolve_topic",
    "topic_partitions",
]
