"""Dead letters: read them (marking those already redriven) and show one whole.

What counts as "already redriven" — the ``dlq-redrive`` group's committed watermark plus the
``mesh-redriven-from`` header on redriven records — is explained in ``_redrive``, which writes both.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import ConfigError
from mesh.events import HEADER_TYPE, DeadLetter, Mapper
from mesh.inspect._expr import Filter
from mesh.inspect._read import (
    MAX_FETCH_BYTES,
    fetch_one,
    log_ends,
    log_starts,
    read_records,
    reading,
    topic_partitions,
)
from mesh.inspect._records import FILTER_NAMES, Seen, escape, see
from mesh.kafka.connection import kafka_errors
from mesh.kafka.partitions import partition_for
from mesh.settings import Settings

HEADER_REDRIVEN_FROM = "mesh-redriven-from"
"""On a redriven record: the dead letter it came from, ``<dlq topic>/<partition>/<offset>``."""

HEADER_REDRIVEN_ORIGIN = "mesh-redriven-origin"
"""On a redriven record: where the original was, ``<topic>/<partition>/<offset>``; a redrive
re-sends one original once, however many dead letters name it."""

REDRIVE_GROUP = "dlq-redrive"
"""Logical consumer group whose committed DLQ offsets are the redrive watermark."""

LETTER_FIELDS: frozenset[str] = FILTER_NAMES | {"redriven", "original_type", "original_channel"}
"""Names a ``dlq`` filter may use: the dead letter's fields, the record's, and the three above."""

_SHOW_ORIGINAL_BYTES = 64 * 1024


@dataclass
class Letter:
    """One record of the DLQ topic: its view, its dead letter (None if it is not one) and key."""

    seen: Seen
    letter: DeadLetter | None
    key: bytes | None
    redriven: bool = False
    redrive_of: str | None = None
    """If this letter is itself about a redriven record: the dead letter that one came from."""
    carries_value: bool = False
    """The letter holds the original value (kept out of memory here: see :func:`full_letters`)."""

    @property
    def position(self) -> str:
        return self.seen.position

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.seen.topic, self.seen.partition)

    @property
    def origin(self) -> str | None:
        """Where the original record was, ``<topic>/<partition>/<offset>`` (None: no letter)."""
        letter = self.letter
        if letter is None:
            return None
        return f"{letter.original_topic}/{letter.original_partition}/{letter.original_offset}"

    def fields(self, settings: Settings) -> dict[str, Any]:
        """What a filter reads: the letter's fields, the record's, and ``redriven``,
        ``original_type`` and ``original_channel`` (original topic without the prefix)."""
        data = self.seen.fields()
        data["redriven"] = self.redriven
        if self.letter is not None:
            data["original_type"] = self.letter.original_headers.get(HEADER_TYPE)
            data["original_channel"] = self.letter.original_topic.removeprefix(
                settings.topic_prefix
            )
        return data

    def summary(self) -> dict[str, Any]:
        """The row of ``dlq list`` as data."""
        letter = self.letter
        base: dict[str, Any] = {
            "partition": self.seen.partition,
            "offset": self.seen.offset,
            "timestamp": self.seen.as_json()["timestamp"],
            "redriven": self.redriven,
        }
        if letter is None:
            return {**base, "dead_letter": False, "reason": self.seen.decode_error}
        return {
            **base,
            "dead_letter": True,
            "component": letter.component,
            "original_topic": letter.original_topic,
            "original_partition": letter.original_partition,
            "original_offset": letter.original_offset,
            "original_key": letter.original_key,
            "original_type": letter.original_headers.get(HEADER_TYPE),
            "error_class": letter.error_class,
            "reason": letter.error_message,
            "attempts": letter.attempts,
            "redrive_of": self.redrive_of,
        }


@dataclass
class Letters:
    """Every record of the DLQ topic in partition and offset order, and the redrive watermark."""

    topic: str
    items: list[Letter]
    watermarks: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]


async def read_letters(settings: Settings) -> Letters:
    """Read the whole DLQ topic and mark which letters were already redriven."""
    topic = settings.topic("dlq")
    mapper = Mapper(max_event_bytes=MAX_FETCH_BYTES)
    async with reading(settings, group_id=settings.group(REDRIVE_GROUP)) as consumer:
        partitions = (await topic_partitions(consumer, settings)).get(topic)
        if not partitions:
            raise ConfigError(f"no dead-letter topic {topic!r}; run 'mesh topics apply'")
        tps = [TopicPartition(topic, n) for n in range(partitions)]
        watermarks = await _watermarks(consumer, settings, tps)
        starts = await log_starts(consumer, settings, tps)
        ends = await log_ends(consumer, settings, tps)
        items: list[Letter] = []
        async with contextlib.aclosing(read_records(consumer, settings, starts, ends)) as records:
            async for record in records:
                seen = see(record, mapper)
                letter = seen.event if isinstance(seen.event, DeadLetter) else None
                carries = letter is not None and letter.original_value_base64 is not None
                if letter is not None and carries:  # up to ~1 MiB each: re-read when needed
                    letter = letter.model_copy(update={"original_value_base64": None})
                    seen = dataclasses.replace(seen, event=letter)
                item = Letter(seen, letter, record.key, carries_value=carries)
                item.redriven = record.offset < watermarks[item.tp]
                if letter is not None:
                    item.redrive_of = letter.original_headers.get(HEADER_REDRIVEN_FROM)
                items.append(item)
        items.sort(key=lambda i: (i.seen.partition, i.seen.offset))
        pending = [i for i in items if i.letter is not None and not i.redriven]
        # One origin record is redriven once, however many dead letters it has: a letter whose
        # origin was redriven (by a letter below the watermark or, as the redriven copies'
        # headers say, above it) counts as redriven too.
        origins = {i.origin for i in items if i.origin is not None and i.redriven}
        if pending:
            done, redriven_origins = await _already_redriven(consumer, settings, pending)
            origins |= redriven_origins
            for item in pending:
                item.redriven = _origin(item) in done or item.origin in origins
    return Letters(topic, items, watermarks, ends)


async def _watermarks(
    consumer: AIOKafkaConsumer, settings: Settings, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    marks: dict[TopicPartition, int] = {}
    for tp in tps:
        with kafka_errors(settings, "read the redrive watermark"):
            committed = await consumer.committed(tp)
        marks[tp] = int(committed) if committed is not None and committed >= 0 else 0
    return marks


def _origin(item: Letter) -> str:
    return f"{item.seen.topic}/{item.seen.partition}/{item.seen.offset}"


def redrive_target(item: Letter, partitions: int) -> TopicPartition:
    """Where a redrive sends the letter: the key's partition (as its producer chose), else the
    partition it was read from."""
    letter = item.letter
    assert letter is not None
    if letter.original_key is not None and item.key is not None:
        return TopicPartition(letter.original_topic, partition_for(item.key, partitions))
    return TopicPartition(letter.original_topic, letter.original_partition % partitions)


async def _already_redriven(
    consumer: AIOKafkaConsumer, settings: Settings, pending: list[Letter]
) -> tuple[set[str], set[str]]:
    """Dead letters (``topic/partition/offset``) named by ``mesh-redriven-from`` headers, and
    original records named by ``mesh-redriven-origin`` headers, in the partitions the pending
    letters would be redriven to, from the oldest original offset on."""
    topics = await topic_partitions(consumer, settings)
    scan_from: dict[TopicPartition, int] = {}
    for item in pending:
        letter = item.letter
        assert letter is not None
        partitions = topics.get(letter.original_topic)
        if not partitions:
            continue
        target = redrive_target(item, partitions)
        same = target.partition == letter.original_partition
        begin = letter.original_offset + 1 if same else 0
        scan_from[target] = min(scan_from.get(target, begin), begin)
    if not scan_from:
        return set(), set()
    starts = await log_starts(consumer, settings, scan_from)
    ends = await log_ends(consumer, settings, scan_from)
    firsts = {tp: max(offset, starts[tp]) for tp, offset in scan_from.items()}
    found: dict[str, set[str]] = {HEADER_REDRIVEN_FROM: set(), HEADER_REDRIVEN_ORIGIN: set()}
    async with contextlib.aclosing(read_records(consumer, settings, firsts, ends)) as records:
        async for record in records:
            for name, value in record.headers or ():
                if name in found and value is not None:
                    found[name].add(bytes(value).decode("utf-8", errors="replace"))
    return found[HEADER_REDRIVEN_FROM], found[HEADER_REDRIVEN_ORIGIN]


def select(letters: Letters, settings: Settings, where: Filter | None) -> list[Letter]:
    """Dead letters (not other records) that pass ``where``."""
    return [
        item
        for item in letters.items
        if item.letter is not None and (where is None or where.matches(item.fields(settings)))
    ]


def parse_position(text: str) -> tuple[int | None, int]:
    """``OFFSET`` or ``PARTITION:OFFSET`` as typed after ``mesh dlq show``."""
    partition, sep, offset = text.strip().rpartition(":")
    try:
        number = int(offset)
        part = int(partition) if sep else None
    except ValueError:
        raise ConfigError(
            f"cannot read position {text!r}: give OFFSET or PARTITION:OFFSET, e.g. 2:41"
        ) from None
    if number < 0 or (part is not None and part < 0):
        raise ConfigError(f"position {text!r} must not be negative")
    return part, number


def find(letters: Letters, partition: int | None, offset: int) -> Letter:
    """The record at that position; ``ConfigError`` if none, or if an offset alone is ambiguous."""
    hits = [
        item
        for item in letters.items
        if item.seen.offset == offset and (partition is None or item.seen.partition == partition)
    ]
    if not hits:
        where = f"{partition}:{offset}" if partition is not None else f"offset {offset}"
        raise ConfigError(f"no dead letter at {where} in {letters.topic} (see 'mesh dlq list')")
    if len(hits) > 1:
        numbers = ", ".join(str(h.seen.partition) for h in hits)
        raise ConfigError(
            f"offset {offset} exists in partitions {numbers} of {letters.topic}; "
            f"name one as PARTITION:{offset}"
        )
    return hits[0]


@dataclass(frozen=True)
class Original:
    """The original record of a dead letter, as far as it can still be had."""

    value: bytes | None
    source: str
    """``letter`` (carried in the dead letter), ``topic`` (read at its offset) or ``missing``."""
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


async def full_letters(
    consumer: AIOKafkaConsumer, settings: Settings, items: list[Letter]
) -> AsyncGenerator[tuple[Letter, DeadLetter], None]:
    """Each of ``items`` with its whole dead letter (original value included), read again from
    the DLQ in one pass per partition, so that only one batch of values is in memory at a time."""
    mapper = Mapper(max_event_bytes=MAX_FETCH_BYTES)
    by_tp: dict[TopicPartition, dict[int, Letter]] = {}
    for item in items:
        by_tp.setdefault(item.tp, {})[item.seen.offset] = item
    for tp, wanted in sorted(by_tp.items()):
        span = {tp: min(wanted)}, {tp: max(wanted) + 1}
        async with contextlib.aclosing(read_records(consumer, settings, *span)) as records:
            async for record in records:
                found = wanted.get(record.offset)
                if found is None:
                    continue
                event = see(record, mapper).event
                if isinstance(event, DeadLetter):
                    yield found, event


async def original_of(
    settings: Settings, item: Letter, letter: DeadLetter, consumer: AIOKafkaConsumer
) -> Original:
    """The original record of ``letter`` (the whole one, as :func:`full_letters` gives it): its
    value from the letter, else read back at its topic, partition and offset."""
    headers = tuple((k, v.encode()) for k, v in letter.original_headers.items())
    if letter.original_value_base64 is not None:
        try:
            value = base64.b64decode(letter.original_value_base64, validate=True)
        except (binascii.Error, ValueError):
            return Original(None, "missing")
        key = item.key if letter.original_key is not None else None
        return Original(value, "letter", key, headers)
    tp = TopicPartition(letter.original_topic, letter.original_partition)
    record = await fetch_one(consumer, settings, tp, letter.original_offset)
    if record is None:
        return Original(None, "missing")
    return Original(record.value, "topic", record.key, tuple(record.headers or ()))


async def whole_letter(settings: Settings, item: Letter) -> tuple[DeadLetter, Original]:
    """One dead letter read again whole, and its original record (for ``dlq show``)."""
    assert item.letter is not None
    whole = item.letter
    async with reading(settings) as letter_reader, reading(settings) as original_reader:
        async with contextlib.aclosing(full_letters(letter_reader, settings, [item])) as found:
            async for _item, letter in found:
                whole = letter
        return whole, await original_of(settings, item, whole, original_reader)


def describe_original(original: Original, mapper: Mapper) -> dict[str, Any]:
    """The original payload for ``dlq show``: decoded if it is a mesh event, else JSON, else
    escaped bytes (cut at 64 KiB)."""
    data: dict[str, Any] = {"source": original.source}
    if original.value is None:
        data["value"] = None
        return data
    data["value_bytes"] = len(original.value)
    try:
        data["event"] = mapper.decode(original.value, original.headers).model_dump(mode="json")
        return data
    except Exception as exc:
        data["decode_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    data["value"] = escape(original.value, _SHOW_ORIGINAL_BYTES)
    return data


__all__ = [
    "HEADER_REDRIVEN_FROM",
    "HEADER_REDRIVEN_ORIGIN",
    "LETTER_FIELDS",
    "REDRIVE_GROUP",
    "Letter",
    "Letters",
    "Original",
    "describe_original",
    "find",
    "full_letters",
    "original_of",
    "parse_position",
    "read_letters",
    "redrive_target",
    "select",
    "whole_letter",
]
