"""Producing a :class:`Work`: send everything without waiting per record, then wait once.

Sends are queued back to back (aiokafka batches them per partition) and their futures awaited
together. Snapshots need the offsets the history got, so the history is awaited before the
snapshots are made and sent (inside the transaction on real Kafka).

Without transactions, order is what keeps a crash harmless: new workflows' start markers and
the dispatches (and other messages) are acknowledged before the history that records them is
written, and the history before the input offsets are committed. A crash in between leaves
either an input that will be decided again (and its dispatch repeated: at-least-once) or
history that the rebuild finds and folds, after which the redelivered input is a duplicate that
``decide`` ignores; never a recorded decision whose dispatch was lost. For the same reason the
history goes in whole record batches, each holding whole decisions (a batch is appended
atomically): a crash never leaves half a decision (a task completed, its dependants not
scheduled) for the rebuild to fold and the redelivered input to be ignored against.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from mesh.kafka.produce import retrieve, send_all
from mesh.workflows.runtime._work import Work


async def write(
    producer: Any,
    work: Work,
    topic_of: Callable[[str], str],
    *,
    at_least_once: bool,
    batch_bytes: int = 0,
) -> None:
    """Produce everything ``work`` made, snapshots included, and wait until all is acknowledged.

    ``at_least_once`` (no transactions) writes start markers and the messages first and waits
    for them, then the history in whole-decision record batches of at most ``batch_bytes``.
    """
    pending: list[asyncio.Future[Any]] = []
    try:
        first = [*work.markers(), *work.messages] if at_least_once else work.messages
        messages = await send_all(producer, topic_of, first)
        pending += messages
        if at_least_once:
            await asyncio.gather(*messages)
            offsets = await _send_decisions(producer, work, topic_of, batch_bytes)
        else:
            history = await send_all(producer, topic_of, work.history)
            pending += history
            offsets = [metadata.offset for metadata in await asyncio.gather(*history)]
        positions: dict[str, tuple[int, int]] = {}
        for record, offset in zip(work.history, offsets, strict=True):
            assert record.workflow_id is not None
            first_offset = positions.get(record.workflow_id, (offset, 0))[0]
            positions[record.workflow_id] = (first_offset, offset)
        snapshots = await send_all(producer, topic_of, work.snapshots(positions))
        pending += snapshots
        await asyncio.gather(*messages, *snapshots)
    except BaseException:
        for future in pending:  # one failure is reported; the rest need not be logged again
            future.add_done_callback(retrieve)
        raise


def pack(sizes: Sequence[int], ends: Sequence[int], capacity: int) -> list[list[int]]:
    """Record indexes grouped into batches of at most ``capacity`` bytes, never splitting a
    decision (``ends``: where each decision's records end) unless it alone is too large."""
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    start = 0
    for end in ends:
        size = sum(sizes[start:end])
        if current and used + size > capacity:
            batches.append(current)
            current, used = [], 0
        if size > capacity:  # cannot be atomic: split by records
            for index in range(start, end):
                if current and used + sizes[index] > capacity:
                    batches.append(current)
                    current, used = [], 0
                current.append(index)
                used += sizes[index]
        else:
            current.extend(range(start, end))
            used += size
        start = end
    if current:
        batches.append(current)
    return batches


async def _send_decisions(
    producer: Any, work: Work, topic_of: Callable[[str], str], capacity: int
) -> list[int]:
    """Write ``work.history`` as record batches of whole decisions; their offsets, in order."""
    history = work.history
    sizes = [
        DefaultRecordBatchBuilder.estimate_size_in_bytes(r.key, r.value, list(r.headers))
        for r in history
    ]
    topic = topic_of("workflow.events")
    offsets: list[int] = []
    for indexes in pack(sizes, work.decisions, capacity):
        remaining = list(indexes)
        while remaining:
            batch = producer.create_batch()
            taken = 0
            for index in remaining:
                r = history[index]
                if (
                    batch.append(timestamp=None, key=r.key, value=r.value, headers=r.headers)
                    is None
                ):
                    break  # over the estimate after all; the rest goes in the next batch
                taken += 1
            batch.close()
            future = await producer.send_batch(batch, topic, partition=work.partition.number)
            base = (await future).offset
            offsets.extend(base + i for i in range(taken))
            remaining = remaining[taken:]
    return offsets
