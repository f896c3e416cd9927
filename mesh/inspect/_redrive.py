"""``mesh dlq redrive``: dead letters back to the topics they came from, safe to re-run.

Two records of what was redriven, each cheap where the other is not:

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
- **Deduplicated by origin**: one original record (topic, partition, offset) is re-sent once,
  however many dead letters name it. Within a run only its first letter is sent; a letter whose
  origin was redriven before — by a letter below the watermark, or as the
  ``mesh-redriven-origin`` header on a redriven copy says — counts as already redriven.

Both work on every broker (the embedded one keeps no offset-commit metadata, which is why the
"redriven above the watermark" set is not stored there). Records are produced (``acks=all``),
then the watermark is committed: a crash in between is caught by the header scan on the next run;
a retried send may still duplicate a record, which mesh consumers drop by event id.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from mesh.events import DeadLetter
from mesh.inspect._dlq import (
    HEADER_REDRIVEN_FROM,
    HEADER_REDRIVEN_ORIGIN,
    REDRIVE_GROUP,
    Letter,
    Letters,
    Original,
    full_letters,
    original_of,
    read_letters,
    redrive_target,
    select,
)
from mesh.inspect._expr import Filter
from mesh.inspect._read import MAX_FETCH_BYTES, reading, topic_partitions
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.settings import Settings

_CHUNK = 200
"""Sends in flight before waiting for their acks (and moving the progress bar)."""


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
    watermark. ``planned(total)`` is called once the work is known, ``progress(n)`` per ack.

    Letters stream through (one fetched batch of values in memory at a time): read again from the
    DLQ, sent, acknowledged in chunks."""
    letters = await read_letters(settings)
    matching = select(letters, settings, where)
    result = RedriveResult(dry_run=dry_run, matched=len(matching))
    todo = _first_per_origin([item for item in matching if not item.redriven])
    result.already_redriven = len(matching) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    sent: list[Letter] = []
    async with (
        reading(settings) as letter_reader,
        reading(settings) as original_reader,
        _sender(settings, dry_run) as producer,
    ):
        topics = await topic_partitions(letter_reader, settings)
        sendable = []
        for item in todo:
            assert item.letter is not None
            if topics.get(item.letter.original_topic):
                sendable.append(item)
            else:
                result.unavailable.append(
                    f"{item.position}: topic {item.letter.original_topic} is gone"
                )
        planned(len(sendable))
        acks: list[Any] = []
        wholes = contextlib.aclosing(full_letters(letter_reader, settings, sendable))
        async with wholes as found:
            async for item, whole in found:
                original = await original_of(settings, item, whole, original_reader)
                if original.value is None:
                    result.unavailable.append(
                        f"{item.position}: original value no longer available"
                    )
                    continue
                if producer is not None:
                    acks.append(await _send(producer, item, whole, original, topics, letters.topic))
                sent.append(item)
                result.by_topic[whole.original_topic] = (
                    result.by_topic.get(whole.original_topic, 0) + 1
                )
                result.positions.append(item.position)
                if len(acks) >= _CHUNK:
                    await _acknowledged(settings, acks, len(sent), progress)
        await _acknowledged(settings, acks, len(sent), progress)
    result.redriven = len(sent)
    if dry_run:
        return result
    for item in sent:
        item.redriven = True
    done = {item.origin for item in sent}
    for item in matching:  # the other letters of a redriven origin: nothing left to send
        if item.origin in done:
            item.redriven = True
    result.watermarks = await _advance(settings, letters)
    return result


def _first_per_origin(items: list[Letter]) -> list[Letter]:
    """The first letter of each original record: two dead letters of one record (two
    consumers that both gave up on it) re-send it once."""
    seen: set[str | None] = set()
    first = []
    for item in items:
        if item.origin not in seen:
            seen.add(item.origin)
            first.append(item)
    return first


@contextlib.asynccontextmanager
async def _sender(settings: Settings, dry_run: bool) -> AsyncIterator[AIOKafkaProducer | None]:
    """A started producer (None for a dry run), stopped however the block ends."""
    if dry_run:
        yield None
        return
    producer = AIOKafkaProducer(
        **client_kwargs(settings),
        acks="all",  # no idempotence: the embedded broker has no InitProducerId
        max_request_size=MAX_FETCH_BYTES,
    )
    try:
        with kafka_errors(settings, "connect to Kafka to redrive"):
            await producer.start()
        yield producer
    finally:
        await stop_clients(producer)


async def _send(
    producer: AIOKafkaProducer,
    item: Letter,
    whole: DeadLetter,
    original: Original,
    topics: dict[str, int],
    dlq_topic: str,
) -> Any:
    """Queue the original record for its topic: its key (so the key's partition), or its old
    partition when it had no key; its headers plus ``mesh-redriven-from``. The ack future."""
    target = None
    if original.key is None:
        target = redrive_target(item, topics[whole.original_topic]).partition
    ours = (HEADER_REDRIVEN_FROM, HEADER_REDRIVEN_ORIGIN)
    headers = [(k, v) for k, v in original.headers if k not in ours]
    origin = f"{dlq_topic}/{item.seen.partition}/{item.seen.offset}"
    headers.append((HEADER_REDRIVEN_FROM, origin.encode()))
    headers.append((HEADER_REDRIVEN_ORIGIN, (item.origin or "").encode()))
    return await producer.send(
        whole.original_topic, original.value, key=original.key, headers=headers, partition=target
    )


async def _acknowledged(
    settings: Settings, acks: list[Any], sent: int, progress: Callable[[int], None]
) -> None:
    """Wait for every queued send (raising a ``BrokerError`` if one failed), then report."""
    with kafka_errors(settings, "redrive dead letters"):
        for ack in acks:
            await ack
    acks.clear()
    progress(sent)


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


__all__ = ["RedriveResult", "redrive"]
