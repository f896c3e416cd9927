"""``mesh tail``: the records of one topic, decoded, from a chosen start, optionally narrowed.

With ``workflow``, a topic keyed by workflow id (the catalog says which) is read on the one
partition the id maps to — the same murmur2 the producers use — instead of scanning them all;
other topics are read whole and matched on the key or the event's ``workflow_id``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal

from aiokafka import TopicPartition

from mesh.errors import ConfigError
from mesh.events import CHANNELS, Mapper
from mesh.inspect._expr import Filter
from mesh.inspect._read import (
    log_ends,
    log_starts,
    offsets_at,
    read_records,
    reading,
    resolve_topic,
)
from mesh.inspect._records import Seen, see
from mesh.kafka.partitions import partition_for
from mesh.settings import Settings

Start = Literal["end", "beginning", "offset", "time"]


@dataclass(frozen=True)
class TailOptions:
    """What to read: the topic, where to start, which records, when to stop."""

    topic: str
    start: Start = "end"
    offset: int | None = None
    """With ``start="offset"``: the offset to start at in every partition read."""
    at_ms: int | None = None
    """With ``start="time"``: epoch milliseconds (offsets by timestamp; real Kafka)."""
    workflow: str | None = None
    where: Filter | None = None
    until_end: bool = False
    max_records: int | None = None

    def __post_init__(self) -> None:
        if self.start == "offset" and (self.offset is None or self.offset < 0):
            raise ConfigError("--from-offset needs an offset of 0 or more")
        if self.start == "time" and self.at_ms is None:
            raise ConfigError("--from-time needs a time")
        if self.max_records is not None and self.max_records < 1:
            raise ConfigError("--max must be 1 or more")


def keyed_by_workflow(settings: Settings, topic: str) -> bool:
    """True if the catalog says ``topic`` is keyed by workflow id."""
    channel = CHANNELS.get(topic.removeprefix(settings.topic_prefix))
    return (
        channel is not None
        and topic.startswith(settings.topic_prefix)
        and channel.key == "workflow id"
    )


def _belongs(seen: Seen, workflow: str) -> bool:
    if seen.key == workflow:
        return True
    return seen.event is not None and getattr(seen.event, "workflow_id", None) == workflow


async def tail(settings: Settings, options: TailOptions) -> AsyncGenerator[Seen, None]:
    """The matching records, as :class:`Seen`, until the end / the maximum / for ever."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    async with reading(settings) as consumer:
        topic, count = await resolve_topic(consumer, settings, options.topic)
        numbers = list(range(count))
        if options.workflow is not None and keyed_by_workflow(settings, topic):
            numbers = [partition_for(options.workflow, count)]
        tps = [TopicPartition(topic, n) for n in numbers]
        ends = await log_ends(consumer, settings, tps)
        if options.start == "end":
            starts = dict(ends)
        elif options.start == "beginning":
            starts = await log_starts(consumer, settings, tps)
        elif options.start == "offset":
            assert options.offset is not None
            starts = dict.fromkeys(tps, options.offset)
        else:
            assert options.at_ms is not None
            starts = await offsets_at(consumer, settings, tps, options.at_ms)
        shown = 0
        async for record in read_records(
            consumer, settings, starts, ends if options.until_end else None
        ):
            seen = see(record, mapper)
            if options.workflow is not None and not _belongs(seen, options.workflow):
                continue
            if options.where is not None and not options.where.matches(seen.fields()):
                continue
            yield seen
            shown += 1
            if options.max_records is not None and shown >= options.max_records:
                return


__all__ = ["Start", "TailOptions", "keyed_by_workflow", "tail"]
