"""Dead letters: read them, show one whole, and redrive them to the topics they came from.

Redrive is safe to re-run. Two records of what was redriven, each cheap where the other is not:

- **A committed offset** of the consumer group ``<prefix>dlq-redrive`` on each DLQ partition: the
  watermark below which every letter has been redriven (or is not a dead letter at all). A run
  without a filter moves it to the end, so the next run looks at new letters only. A filtered run
  moves it only over the unbroken run of letters it redrove, so letters it left out stay
  redrivable by a later run with another filter.
- **A header on every redriven record**, ``mesh-redriven-from: <dlq topic>/<partition>/<offset>``.
  For letters above the watermark, the partition the redriven copy goes to is scanned (from the
  original offset on) for that header, so a letter redriven by an earlier filtered run — or by a
  run that crashed after producing but before committing — is not sent twice. The header also
  travels into a new dead letter if the redriven record fails again, so ``dlq list`` shows it.

Both work on every broker (the embedded one keeps no offset-commit metadata, which is why the
"redriven above the watermark" set is not stored there). Records are produced (``acks=all``),
then the watermark is committed: a crash in between is caught by the header scan on the next run;
a retried send may still duplicate a record, which mesh consumers drop by event id.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

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
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.partitions import partition_for
from mesh.settings import Settings

HEADER_REDRIVEN_FROM = "mesh-redriven-from"
"""On a redriven record: the dead letter it came from, ``<dlq topic>/<partition>/<offset>``."""

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

    @property
    def position(self) -> str:
        return self.seen.position

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.seen.topic, self.seen.partition)

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
                item = Letter(seen, letter, record.key)
                item.redriven = record.offset < watermarks[item.tp]
                if letter is not None:
                    item.redrive_of = letter.original_headers.get(HEADER_REDRIVEN_FROM)
                items.append(item)
        items.sort(key=lambda i: (i.seen.partition, i.seen.offset))
        pending = [i for i in items if i.letter is not None and not i.redriven]
        if pending:
            done = await _already_redriven(consumer, settings, pending)
            for item in pending:
                item.redriven = _origin(item) in done
    return Letters(topic, items, watermarks, ends)


async def _watermarks(
    consumer: Any, settings: Settings, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    marks: dict[TopicPartition, int] = {}
    for tp in tps:
        with kafka_errors(settings, "read the redrive watermark"):
            committed = await consumer.committed(tp)
        marks[tp] = int(committed) if committed is not None and committed >= 0 else 0
    return marks


def _origin(item: Letter) -> str:
    return f"{item.seen.topic}/{item.seen.partition}/{item.seen.offset}"


def _target(item: Letter, partitions: int) -> TopicPartition:
    """Where a redrive sends the letter: the key's partition (as its producer chose), else the
    partition it was read from."""
    letter = item.letter
    assert letter is not None
    if letter.original_key is not None and item.key is not None:
        return TopicPartition(letter.original_topic, partition_for(item.key, partitions))
    return TopicPartition(letter.original_topic, letter.original_partition % partitions)


async def _already_redriven(consumer: Any, settings: Settings, pending: list[Letter]) -> set[str]:
    """Origins (``topic/partition/offset``) named by ``mesh-redriven-from`` headers in the
    partitions the pending letters would be redriven to, from the oldest original offset on."""
    topics = await topic_partitions(consumer, settings)
    scan_from: dict[TopicPartition, int] = {}
    for item in pending:
        letter = item.letter
        assert letter is not None
        partitions = topics.get(letter.original_topic)
        if not partitions:
            continue
        target = _target(item, partitions)
        same = target.partition == letter.original_partition
        begin = letter.original_offset + 1 if same else 0
        scan_from[target] = min(scan_from.get(target, begin), begin)
    if not scan_from:
        return set()
    starts = await log_starts(consumer, settings, scan_from)
    ends = await log_ends(consumer, settings, scan_from)
    firsts = {tp: max(offset, starts[tp]) for tp, offset in scan_from.items()}
    found: set[str] = set()
    async with contextlib.aclosing(read_records(consumer, settings, firsts, ends)) as records:
        async for record in records:
            for name, value in record.headers or ():
                if name == HEADER_REDRIVEN_FROM and value is not None:
                    found.add(bytes(value).decode("utf-8", errors="replace"))
    return found


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


async def original_of(settings: Settings, item: Letter, consumer: Any | None = None) -> Original:
    """The original value: from the letter, else read back at its topic, partition and offset."""
    letter = item.letter
    assert letter is not None
    headers = tuple((k, v.encode()) for k, v in letter.original_headers.items())
    if letter.original_value_base64 is not None:
        try:
            value = base64.b64decode(letter.original_value_base64, validate=True)
        except (binascii.Error, ValueError):
            return Original(None, "missing")
        key = item.key if letter.original_key is not None else None
        return Original(value, "letter", key, headers)
    tp = TopicPartition(letter.original_topic, letter.original_partition)
    if consumer is None:
        async with reading(settings) as own:
            record = await fetch_one(own, settings, tp, letter.original_offset)
    else:
        record = await fetch_one(consumer, settings, tp, letter.original_offset)
    if record is None:
        return Original(None, "missing")
    return Original(record.value, "topic", record.key, tuple(record.headers or ()))


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


@dataclass
class RedriveResult:
    """What a redrive did (or, with ``dry_run``, would do)."""

    dry_run: bool
    matched: int = 0
    redriven: int = 0
    already_redriven: int = 0
    unavailable: list[str] = field(default_factory=list)
    by_topic: dict[str, int] = field(default_factory=dict)
    positions: list[str] = field(default_factory=list)
    watermarks: dict[int, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "matched": self.matched,
            "redriven": self.redriven,
            "already_redriven": self.already_redriven,
            "unavailable": self.unavailable,
            "by_topic": self.by_topic,
            "positions": self.positions,
            "watermarks": {str(k): v for k, v in self.watermarks.items()},
        }


async def redrive(
    settings: Settings,
    where: Filter | None = None,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    planned: Callable[[int], None] = lambda total: None,
    progress: Callable[[int], None] = lambda done: None,
) -> RedriveResult:
    """Send matching dead letters not yet redriven back to their original topics, then move the
    watermark. ``planned(total)`` is called once the work is known, ``progress(n)`` per ack."""
    letters = await read_letters(settings)
    matching = select(letters, settings, where)
    result = RedriveResult(dry_run=dry_run, matched=len(matching))
    todo = [item for item in matching if not item.redriven]
    result.already_redriven = len(matching) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    async with reading(settings) as consumer:
        topics = await topic_partitions(consumer, settings)
        sends: list[tuple[Letter, TopicPartition | None, Original]] = []
        for item in todo:
            letter = item.letter
            assert letter is not None
            partitions = topics.get(letter.original_topic)
            if not partitions:
                result.unavailable.append(f"{item.position}: topic {letter.original_topic} is gone")
                continue
            original = await original_of(settings, item, consumer)
            if original.value is None:
                result.unavailable.append(f"{item.position}: original value no longer available")
                continue
            key = original.key
            target = None if key is not None else _target(item, partitions)
            sends.append((item, target, original))
    planned(len(sends))
    for item, _target_tp, _original in sends:
        assert item.letter is not None
        topic = item.letter.original_topic
        result.by_topic[topic] = result.by_topic.get(topic, 0) + 1
        result.positions.append(item.position)
    if dry_run:
        result.redriven = len(sends)
        return result
    await _produce(settings, sends, letters.topic, progress)
    result.redriven = len(sends)
    for item, _target_tp, _original in sends:
        item.redriven = True
    result.watermarks = await _advance(settings, letters)
    return result


async def _produce(
    settings: Settings,
    sends: list[tuple[Letter, TopicPartition | None, Original]],
    dlq_topic: str,
    progress: Callable[[int], None],
) -> None:
    if not sends:
        return
    producer = AIOKafkaProducer(
        **client_kwargs(settings),
        acks="all",  # no idempotence: the embedded broker has no InitProducerId
        max_request_size=MAX_FETCH_BYTES,
    )
    done = 0
    with kafka_errors(settings, "redrive dead letters"):
        try:
            await producer.start()
            for chunk in _chunks(sends, 200):
                futures = []
                for item, target, original in chunk:
                    assert item.letter is not None
                    headers = [(k, v) for k, v in original.headers if k != HEADER_REDRIVEN_FROM]
                    headers.append(
                        (
                            HEADER_REDRIVEN_FROM,
                            f"{dlq_topic}/{item.seen.partition}/{item.seen.offset}".encode(),
                        )
                    )
                    futures.append(
                        await producer.send(
                            item.letter.original_topic,
                            original.value,
                            key=original.key,
                            headers=headers,
                            partition=None if target is None else target.partition,
                        )
                    )
                for future in futures:
                    await future
                    done += 1
                    progress(done)
        finally:
            await producer.stop()


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _advance(settings: Settings, letters: Letters) -> dict[int, int]:
    """Commit, per DLQ partition, the offset of the first letter still to redrive (the end if
    none): everything below it has been redriven or is not a dead letter."""
    marks: dict[TopicPartition, int] = {}
    for tp, end in letters.ends.items():
        first_open = [
            item.seen.offset
            for item in letters.items
            if item.tp == tp and item.letter is not None and not item.redriven
        ]
        marks[tp] = min(first_open) if first_open else end
    changed = {tp: m for tp, m in marks.items() if m > letters.watermarks.get(tp, 0)}
    if changed:
        async with reading(settings, group_id=settings.group(REDRIVE_GROUP)) as consumer:
            with kafka_errors(settings, "commit the redrive watermark"):
                consumer.assign(list(changed))
                await consumer.commit(changed)
    return {tp.partition: m for tp, m in sorted(marks.items())}


__all__ = [
    "HEADER_REDRIVEN_FROM",
    "LETTER_FIELDS",
    "REDRIVE_GROUP",
    "Letter",
    "Letters",
    "Original",
    "RedriveResult",
    "describe_original",
    "find",
    "original_of",
    "parse_position",
    "read_letters",
    "redrive",
    "select",
]
