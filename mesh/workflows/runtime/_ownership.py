"""Which partitions this replica owns, and taking them over: fence, rebuild, then consume.

On assignment the new partitions are paused; the manager's loop then *adopts* them: it opens
each one's transactional producer (``<group>-<p>``; ``InitProducerId`` fences a previous owner
that may still be writing), rebuilds its workflows from ``workflow.state`` and
``workflow.events`` (``_rebuild``), and resumes its inputs from their committed offsets. The
rebuild runs in the loop rather than in aiokafka's assignment callback because aiokafka sends no
heartbeats while that callback runs: a rebuild longer than the session timeout would get the
replica thrown out of the group and start the rebalance again. Revocation drops the state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from mesh.events import Mapper
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import kafka_errors
from mesh.kafka.reader import bounds, reader
from mesh.log import get_logger
from mesh.settings import Settings
from mesh.workflows.runtime._offsets import OffsetBook
from mesh.workflows.runtime._partition import Partition
from mesh.workflows.runtime._rebuild import (
    Rebuilt,
    partitions_of,
    rebuild_partition,
    rebuilt_counts,
)

log = get_logger("mesh.workflows.runtime")


class Ownership:
    """The owned partitions with their state, and the input offsets their state includes.

    Everything here changes only under ``lock``, which the loop holds while it handles a batch,
    so a rebalance never pulls a partition out from under a transaction in progress.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str,
        grace: timedelta,
        mapper: Mapper,
        producer_kwargs: Callable[[], dict[str, Any]],
        inputs: Iterable[str],
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.grace = grace
        self.mapper = mapper
        self.producer_kwargs = producer_kwargs
        self.inputs = tuple(inputs)
        """Full names of the input topics."""
        self.transactional = False
        self.consumer: Any = None
        self.partitions: dict[int, Partition] = {}
        self.book: OffsetBook[TopicPartition] = OffsetBook()
        self.lock = asyncio.Lock()
        self.failure: BaseException | None = None
        """An error of a rebalance callback, for the loop to raise (aiokafka only logs them)."""
        self.rebuilds: list[Rebuilt] = []
        self.assignment: set[TopicPartition] = set()
        self.assigned_once = False
        self.pending: set[int] = set()
        """Partition numbers assigned but not adopted yet (their inputs are paused)."""

    @property
    def to_adopt(self) -> bool:
        """Whether the loop must adopt partitions before it handles more input."""
        return bool(self.pending)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Rebalance callback: pause the new partitions until :meth:`adopt`."""
        try:
            async with self.lock:
                numbers = {tp.partition for tp in assigned}
                for number in [n for n in self.partitions if n not in numbers]:
                    await self.close(number)
                self.assignment = set(assigned)
                self.assigned_once = True
                self.pending = {n for n in numbers if n not in self.partitions}
                waiting = [tp for tp in assigned if tp.partition in self.pending]
                if waiting:
                    self.consumer.pause(*waiting)
            log.info("partitions assigned", partitions=sorted(numbers))
        except Exception as exc:
            self.failure = exc

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        """Rebalance callback: drop the revoked partitions' state and producers."""
        async with self.lock:
            self.book.forget(revoked)
            self.assignment -= revoked
            numbers = sorted({tp.partition for tp in revoked})
            self.pending -= set(numbers)
            for number in numbers:
                await self.close(number)
        if numbers:
            log.info("partitions revoked", partitions=numbers)

    async def adopt(self) -> list[int]:
        """Fence, rebuild and resume the pending partitions (call under ``lock``)."""
        numbers = sorted(self.pending)
        began = time.perf_counter()
        try:
            for number in numbers:
                await self.open(number)
            for rebuilt in await self.rebuild(numbers):
                self.partitions[rebuilt.partition].load(rebuilt.workflows, rebuilt.end_offset)
            tps = [tp for tp in self.assignment if tp.partition in self.pending]
            with kafka_errors(self.settings, "read committed input offsets"):
                for tp in tps:
                    # Read again from the committed offset: the rebuilt state includes exactly
                    # the records before it (the fetcher may have read ahead meanwhile).
                    committed = await self.consumer.committed(tp)
                    self.book.start(tp, committed if committed is not None else 0)
                    if committed is None:
                        await self.consumer.seek_to_beginning(tp)
                    else:
                        self.consumer.seek(tp, committed)
            if tps:
                self.consumer.resume(*tps)
        except BaseException:
            for number in numbers:
                await self.close(number)
            raise
        self.pending.clear()
        log.info(
            "partitions rebuilt",
            partitions=numbers,
            workflows=sum(len(self.partitions[n].workflows) for n in numbers),
            seconds=round(time.perf_counter() - began, 4),
        )
        return numbers

    async def open(self, number: int) -> None:
        """Own partition ``number``; with transactions, open (and so fence) its producer."""
        partition = Partition(number, self.grace)
        if self.transactional:
            producer = AIOKafkaProducer(
                **self.producer_kwargs(), transactional_id=f"{self.group_id}-{number}"
            )
            try:
                with kafka_errors(self.settings, f"open the producer of partition {number}"):
                    await producer.start()  # InitProducerId: fences the partition's last owner
            except BaseException:
                await stop_clients(producer)
                raise
            partition.producer = producer
        self.partitions[number] = partition

    async def close(self, number: int) -> None:
        partition = self.partitions.pop(number, None)
        if partition is not None and partition.producer is not None:
            await stop_clients(partition.producer)
            _forget_failed_transaction(partition.producer)

    async def close_all(self) -> None:
        """Close every partition's producer, all of them even if cancelled meanwhile."""
        async with self.lock:
            closing = [self.partitions.pop(number) for number in list(self.partitions)]
            try:
                await stop_clients(*(partition.producer for partition in closing))
            finally:
                for partition in closing:
                    if partition.producer is not None:
                        _forget_failed_transaction(partition.producer)

    def rewind(self, number: int) -> None:
        """Fetch partition ``number``'s inputs again from the first record not handled yet."""
        for topic in self.inputs:
            tp = TopicPartition(topic, number)
            position = self.book.next(tp)
            if position is not None:
                self.consumer.seek(tp, position)

    async def rebuild(self, numbers: Iterable[int]) -> list[Rebuilt]:
        """Rebuild partitions from ``workflow.state`` and ``workflow.events``; logs each."""
        numbers = list(numbers)
        if not numbers:
            return []
        consumer = reader(self.settings)
        results: list[Rebuilt] = []
        try:
            with kafka_errors(self.settings, "start the rebuild reader"):
                await consumer.start()
            tps = [tp for n in numbers for tp in partitions_of(self.settings, n)]
            limits = await bounds(consumer, self.settings, tps)
            for number in numbers:
                rebuilt = await rebuild_partition(
                    consumer,
                    self.settings,
                    self.mapper,
                    number,
                    at_least_once=not self.transactional,
                    limits=limits,
                )
                log.info(
                    "partition rebuilt",
                    partition=number,
                    workflows=len(rebuilt.workflows),
                    statuses=rebuilt_counts(rebuilt.workflows),
                    snapshots=rebuilt.snapshots,
                    events=rebuilt.events,
                    from_offset=rebuilt.start_offset,
                    to_offset=rebuilt.end_offset,
                    seconds=round(rebuilt.seconds, 4),
                )
                results.append(rebuilt)
        finally:
            await stop_clients(consumer)
        self.rebuilds.extend(results)
        return results


def _forget_failed_transaction(producer: Any) -> None:
    """Mark a fenced producer's transaction error as seen.

    aiokafka leaves it on an internal future nobody awaits once the producer is abandoned, and
    asyncio would report it when that future is collected (noise after a fencing that was
    already reported as such).
    """
    waiter = getattr(getattr(producer, "_txn_manager", None), "_transaction_waiter", None)
    if isinstance(waiter, asyncio.Future) and waiter.done() and not waiter.cancelled():
        waiter.exception()


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Hands aiokafka's rebalance callbacks to an :class:`Ownership`."""

    def __init__(self, ownership: Ownership) -> None:
        self.ownership = ownership

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.ownership.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.ownership.assigned(assigned)
