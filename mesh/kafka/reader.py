"""The one reader of mesh's topics: group-less and read_committed.

- :func:`read_range` reads one partition from an offset up to the end it had when reading
  began. Rebuild and replay need "everything committed so far, then stop": the end offset is
  taken once at the start (the last stable offset, under read_committed), and the read is over
  when the consumer's position reaches it, which also steps over transaction markers and
  aborted records that are never returned as records.
- :class:`Follower` follows channels from their beginning for as long as it runs, handing each
  record to a fold, so every replica of a component rebuilds the same view from Kafka alone
  (the Agent Manager's agents, heartbeats, results and breakers); :meth:`Follower.catch_up`
  waits until it has folded everything committed when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import BrokerError
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.partitions import partitions_of
from mesh.kafka.records import ConsumedRecord
from mesh.observe import metrics
from mesh.settings import Settings

_POLL_MS = 200
_PROBE_MS = 10
_MAX_RECORDS = 5_000


def reader(settings: Settings, *, follow: bool = False) -> AIOKafkaConsumer:
    """A group-less consumer for reading partitions by hand (call ``start`` and ``stop``);
    ``follow`` for one that waits for new records as a task-path consumer does."""
    return AIOKafkaConsumer(
        **client_kwargs(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        # A fetch long-polls an idle partition for this long, and offset requests on the same
        # connection queue behind it: the broker default (500 ms) would make every partition
        # switch of a read to the end cost half a second.
        fetch_max_wait_ms=settings.fetch_max_wait_ms if follow else 20,
    )


async def bounds(
    consumer: AIOKafkaConsumer, settings: Settings, tps: list[TopicPartition]
) -> dict[TopicPartition, tuple[int, int]]:
    """Log start and end offset (the last stable offset under read_committed) of each of
    ``tps``, in two requests however many partitions there are."""
    if not tps:
        return {}
    with kafka_errors(settings, "read partition offsets"):
        consumer.assign([])
        firsts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
    return {tp: (int(firsts[tp]), int(ends[tp])) for tp in tps}


async def read_range(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    tp: TopicPartition,
    start: int = 0,
    limits: tuple[int, int] | None = None,
) -> AsyncIterator[list[Any]]:
    """Batches of records of ``tp`` from ``start`` (clamped to the log start) up to its end
    offset; ``limits`` (log start, end) as :func:`bounds` gives them, else asked now. Raises
    ``BrokerError`` if the read stops making progress.

    The end is also taken from the first fetch response (its last stable offset), and the
    larger of the two wins: the embedded broker answers ListOffsets with the start of the last
    record batch rather than the end of the log, which would cut the last batch off.
    """
    if limits is None:
        limits = (await bounds(consumer, settings, [tp]))[tp]
    first, end = limits
    begin = max(start, first)
    with kafka_errors(settings, f"read {tp.topic}[{tp.partition}]"):
        consumer.assign([tp])
        consumer.seek(tp, begin)
    patience = settings.request_timeout_ms / 1000
    last_progress = time.monotonic()
    position = begin
    probed = False
    while True:
        with kafka_errors(settings, f"read {tp.topic}[{tp.partition}]"):
            # getmany waits its whole timeout when nothing comes: poll briefly until the first
            # fetch response says where the end is, so an empty partition costs milliseconds.
            wait = _POLL_MS if probed else _PROBE_MS
            batch = await consumer.getmany(tp, timeout_ms=wait, max_records=_MAX_RECORDS)
            if not probed and (stable := consumer.last_stable_offset(tp)) is not None:
                end, probed = max(end, stable), True
            records = [r for r in batch.get(tp, ()) if begin <= r.offset < end]
            moved = await consumer.position(tp)
        if records:
            yield records
        if probed and moved >= end:
            return
        if moved > position:
            position = moved
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > patience:
            raise BrokerError(
                f"reading {tp.topic}[{tp.partition}] stalled at offset {position} "
                f"(end {end}); is the broker healthy?"
            )


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


async def latest_of_key(
    consumer: AIOKafkaConsumer, settings: Settings, tp: TopicPartition, key: bytes
) -> ConsumedRecord | None:
    """The last record of ``key`` in ``tp`` now (None: none, or a tombstone): what a compacted
    topic keeps for the key, read from the partition's start to its current end."""
    latest: ConsumedRecord | None = None
    async for records in read_range(consumer, settings, tp):
        for record in records:
            if record.key == key:
                latest = record if record.value is not None else None
    return latest


Fold = Callable[[str, ConsumedRecord], None]
"""Takes a channel name and one of its records."""


async def read_to_end(
    settings: Settings, channels: Sequence[str], fold: Fold, *, what: str = "read the mesh's topics"
) -> None:
    """Hand every record of ``channels`` from their beginning to the end they have now to
    ``fold``, partition by partition (one-shot; :class:`Follower` keeps following)."""
    consumer = reader(settings)
    try:
        with kafka_errors(settings, what):
            await consumer.start()
        names = {settings.topic(c): c for c in channels}
        tps = [
            TopicPartition(settings.topic(channel), p)
            for channel in channels
            for p in await partitions_of(consumer, settings, channel)
        ]
        limits = await bounds(consumer, settings, tps)
        for tp in tps:
            async for records in read_range(consumer, settings, tp, 0, limits[tp]):
                for record in records:
                    fold(names[tp.topic], record)
    finally:
        await stop_clients(consumer)


async def end_offsets(settings: Settings, channel: str) -> dict[int, int]:
    """Partition → end offset of ``channel`` now (the last stable offset)."""
    consumer = reader(settings)
    try:
        with kafka_errors(settings, f"read the end of {settings.topic(channel)}"):
            await consumer.start()
        tps = [
            TopicPartition(settings.topic(channel), p)
            for p in await partitions_of(consumer, settings, channel)
        ]
        return {
            tp.partition: end for tp, (_, end) in (await bounds(consumer, settings, tps)).items()
        }
    finally:
        await stop_clients(consumer)


class Follower:
    """Folds ``channels`` from their beginning, then follows them, until cancelled.

    Run :meth:`run` as a task; ``moved`` is set after every batch folded (waiters clear it).
    """

    def __init__(
        self,
        settings: Settings,
        channels: Sequence[str],
        fold: Fold,
        *,
        what: str = "follow the mesh's topics",
        max_records: int = 1_000,
    ) -> None:
        self.settings = settings
        self.channels = tuple(channels)
        self.fold = fold
        self.what = what
        self.max_records = max_records
        self.moved = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self._names: dict[str, str] = {settings.topic(c): c for c in self.channels}
        self._started = asyncio.Event()
        self._polled: dict[TopicPartition, int] = {}
        self._readable_since: dict[TopicPartition, int] = {}
        self.gap_ms = max(3 * settings.fetch_max_wait_ms, 2_000)
        """A partition not fetched for longer than this was unreachable meanwhile."""

    async def run(self) -> None:
        """Assign every partition of the channels from the beginning and fold what comes."""
        consumer = reader(self.settings, follow=True)
        try:
            with kafka_errors(self.settings, self.what):
                await consumer.start()
            self._tps = [
                TopicPartition(self.settings.topic(channel), p)
                for channel in self.channels
                for p in await partitions_of(consumer, self.settings, channel)
            ]
            consumer.assign(self._tps)
            await consumer.seek_to_beginning(*self._tps)
            self._consumer = consumer
            self._started.set()
            # No consumer group: the lag is reported under the channels followed.
            group = "follow:" + "+".join(self.channels)
            metrics.watch(consumer, group)
            while True:
                with kafka_errors(self.settings, self.what):
                    batch = await consumer.getmany(timeout_ms=500, max_records=self.max_records)
                metrics.consumed(group, batch)
                for tp, records in batch.items():
                    channel = self._names[tp.topic]
                    for record in records:
                        self.fold(channel, record)
                self._observe(consumer)
                self.moved.set()
        finally:
            self._consumer = None
            await stop_clients(consumer)

    def _observe(self, consumer: AIOKafkaConsumer) -> None:
        """Note, per partition, since when it has been read without a gap, and until when."""
        for tp in self._tps:
            polled = consumer.last_poll_timestamp(tp)
            if polled is None:
                continue
            last = self._polled.get(tp)
            if last is None or polled - last > self.gap_ms:
                self._readable_since[tp] = polled
            self._polled[tp] = polled

    def partitions(self, channel: str) -> int:
        """How many partitions of ``channel`` are followed (0 before they are known)."""
        topic = self.settings.topic(channel)
        return sum(1 for tp in self._tps if tp.topic == topic)

    def readable(self, tp: TopicPartition) -> tuple[int | None, int | None]:
        """(since, until) in epoch milliseconds: ``tp`` has been fetched without a gap longer
        than ``gap_ms`` since ``since``, last at ``until`` (None: not fetched yet).

        A partition whose leader is gone is not fetched; what was not written to it meanwhile
        says nothing about its writers."""
        return self._readable_since.get(tp), self._polled.get(tp)

    async def catch_up(self, task: asyncio.Task[None] | None = None) -> None:
        """Wait until everything committed on the channels now has been folded; ``task`` is
        the one running :meth:`run`, whose failure is raised instead of waiting forever."""
        while not self._started.is_set():
            await self._wait(task)
        consumer = self._consumer
        assert consumer is not None
        with kafka_errors(self.settings, self.what):
            targets = await consumer.end_offsets(self._tps)
        while True:
            behind = [tp for tp, end in targets.items() if await consumer.position(tp) < end]
            if not behind:
                return
            await self._wait(task)

    async def _wait(self, task: asyncio.Task[None] | None) -> None:
        if task is not None and task.done():
            task.result()  # the follower died: raise its error
            raise asyncio.CancelledError  # it was cancelled: so is the wait
        self.moved.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2 if not self._started.is_set() else 1.0):
                await (self._started.wait() if not self._started.is_set() else self.moved.wait())
