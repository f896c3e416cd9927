"""Offsets by time, for the shadow replay of a time window (one workflow's history and its
snapshots are read by :mod:`mesh.kafka.history`)."""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.kafka.connection import kafka_errors
from mesh.kafka.reader import read_bounded
from mesh.settings import Settings

NO_TIME_LOOKUP = (
    "this broker does not look up offsets by time (the embedded broker's answers are not "
    "exact); records were filtered by their timestamps while reading instead"
)


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
