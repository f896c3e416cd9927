"""Reading the allocator's topics from the beginning: for the component and for the CLI.

The ledger is rebuilt by replaying ``resources`` whole (the embedded broker does not compact, so
the whole log is read and the ledger's idempotent fold keeps the last word per key), together
with ``agents`` and ``agents.heartbeats`` for the hosts agents report. No consumer group is
joined, so every replica, and every ``mesh resources`` command, reads everything by itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import BrokerUnavailable, EventError
from mesh.events import Event, Mapper
from mesh.kafka import ConsumedRecord
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import consumer_kwargs, diagnose_connect_failure, kafka_errors
from mesh.kafka.partitions import topic_partitions
from mesh.resources._api import Allocator
from mesh.resources._policies import AllocatorConfig
from mesh.resources._pools import load_pools, pools_path
from mesh.settings import Settings

LEDGER_TOPICS = ("resources", "agents", "agents.heartbeats")
"""Logical topics folded into an :class:`Allocator`."""

_BATCH = 2_000
_TOPIC_GRACE_SECONDS = 5.0


class TopicReader:
    """Whole topics from the beginning, with no group membership.

    With ``commit_group`` the reader also remembers, per partition, how far it got (offsets
    committed under that group without joining it), so that on the next start it can tell records
    it has already handled (e.g. dead-lettered) from new ones: :meth:`seen_before`.
    """

    def __init__(
        self, settings: Settings, names: Sequence[str], *, commit_group: str | None = None
    ) -> None:
        self.settings = settings
        self.names = tuple(names)
        self.commit_group = commit_group
        self.partitions: list[TopicPartition] = []
        self._marks: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the reader is not started")
        return self._consumer

    async def start(self) -> None:
        """Connect, check the topics exist, and seek every partition to its beginning."""
        consumer = AIOKafkaConsumer(
            # The task path's fetch wait: the embedded broker holds a fetch for all of it, and
            # aiokafka's 500 ms default kept others' ledger records (and the API's) that long.
            **consumer_kwargs(self.settings),
            group_id=self.commit_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            with kafka_errors(self.settings, "read the resource ledger"):
                await consumer.start()
        except BrokerUnavailable as exc:
            await stop_clients(consumer)
            raise await diagnose_connect_failure(self.settings, exc) from exc.__cause__
        self._consumer = consumer
        try:
            with kafka_errors(self.settings, "read the resource ledger"):
                self.partitions = [
                    tp
                    for name in self.names
                    for tp in await partitions_of(consumer, self.settings, name)
                ]
                consumer.assign(self.partitions)
                await consumer.seek_to_beginning(*self.partitions)
                if self.commit_group is not None:
                    for tp in self.partitions:
                        mark = await consumer.committed(tp)
                        if mark is not None:
                            self._marks[tp] = mark
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Disconnect (never raises)."""
        if self._consumer is not None:
            await stop_clients(self._consumer)
            self._consumer = None

    async def catch_up(self, handle: Callable[[ConsumedRecord], None]) -> int:
        """Hand every record up to the current end of each partition to ``handle``; the count."""
        with kafka_errors(self.settings, "read the resource ledger"):
            ends = await self.consumer.end_offsets(self.partitions)
        seen = 0
        while True:
            behind = [tp for tp, end in ends.items() if await self.consumer.position(tp) < end]
            if not behind:
                return seen
            for record in await self.poll(timeout_ms=500, partitions=behind):
                handle(record)
                seen += 1

    async def poll(
        self, timeout_ms: int, partitions: Sequence[TopicPartition] | None = None
    ) -> list[ConsumedRecord]:
        """The next records of any partition, in offset order within each partition."""
        with kafka_errors(self.settings, "read the resource ledger"):
            batch = await self.consumer.getmany(
                *(partitions or ()), timeout_ms=timeout_ms, max_records=_BATCH
            )
        return [record for records in batch.values() for record in records]

    def seen_before(self, record: ConsumedRecord) -> bool:
        """True if a previous run committed past this record."""
        mark = self._marks.get(TopicPartition(record.topic, record.partition))
        return mark is not None and record.offset < mark

    async def commit(self) -> None:
        """Remember how far every partition was read (needs ``commit_group``)."""
        if self.commit_group is None:
            return
        positions = {tp: await self.consumer.position(tp) for tp in self.partitions}
        with kafka_errors(self.settings, "remember the ledger position"):
            await self.consumer.commit({tp: pos for tp, pos in positions.items() if pos > 0})
        self._marks.update(positions)


async def partitions_of(
    consumer: AIOKafkaConsumer, settings: Settings, name: str
) -> list[TopicPartition]:
    """The partitions of a mesh topic; a topic created a moment ago gets a few seconds to show
    up in the metadata, a missing one is an error that says how to create it."""
    topic = settings.topic(name)
    found = await topic_partitions(consumer, settings, topic, grace=_TOPIC_GRACE_SECONDS)
    return [TopicPartition(topic, p) for p in found]


def fold_record(
    allocator: Allocator, settings: Settings, mapper: Mapper, record: ConsumedRecord
) -> Event | None:
    """Fold one record of a ledger topic into ``allocator``; the event, or None for a tombstone.

    Raises ``EventError`` for a record that is not a valid event (the caller decides whether to
    dead-letter it).
    """
    if record.value is None:
        key = record.key.decode(errors="replace") if record.key is not None else ""
        if record.topic == settings.topic("resources"):
            allocator.ledger.forget(key)
        elif record.topic == settings.topic("agents"):
            allocator.discovery.forget(key)
        return None
    event = mapper.decode(record.value, record.headers)
    allocator.apply(event)
    return event


async def read_allocator(
    settings: Settings, *, pools_file: Path | None = None, config: AllocatorConfig | None = None
) -> Allocator:
    """An :class:`Allocator` rebuilt from the topics as they are now (what the CLI shows).

    Its defaults come from ``config``, else from the pools file. Records that are not valid
    events are skipped here: the running allocator dead-letters them.
    """
    if config is None:
        config = load_pools(pools_path(pools_file or settings.resource_pools)).config
    allocator = Allocator(config=config)
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    reader = TopicReader(settings, LEDGER_TOPICS)

    def handle(record: ConsumedRecord) -> None:
        with contextlib.suppress(EventError):
            fold_record(allocator, settings, mapper, record)

    await reader.start()
    try:
        await reader.catch_up(handle)
    finally:
        await reader.stop()
    return allocator


@contextlib.asynccontextmanager
async def reading(reader: TopicReader) -> AsyncIterator[TopicReader]:
    """Start ``reader`` for the duration of a block."""
    await reader.start()
    try:
        yield reader
    finally:
        await reader.stop()
