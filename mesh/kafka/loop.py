"""The one per-partition loop that must neither lose nor repeat an effect: consume → decide →
produce → commit, exactly once on a broker with transactions.

The Workflow Manager (plans, commands, task results → history, snapshots, ready tasks) and the
Agent Manager's assignment (ready tasks → assignments) both run on it; each plugs in a
:class:`PartitionApp` that keeps its state per owned partition number and decides a
:class:`Round` from that partition's new records. The loop owns everything Kafka:

- **Ownership.** Inputs are consumed in one group with the range assignor, so the replica that
  owns partition ``p`` of one co-partitioned input owns ``p`` of all of them. Newly assigned
  partitions are paused; the loop then *adopts* them: it opens each one's transactional
  producer (``<group>-<p>``; ``InitProducerId`` fences a previous owner that may still be
  writing — aiokafka's ``send_offsets_to_transaction`` sends no group metadata (no KIP-447), so
  only an id per partition lets the next owner fence a zombie), lets the app rebuild its state
  for them, and resumes their inputs from the committed offsets. Adoption runs in the loop, not
  in aiokafka's rebalance callback, which sends no heartbeats while it runs: a rebuild longer
  than the session timeout would get the replica thrown out of the group. Revocation drops the
  app's state and closes the producers.
- **Rounds.** Each fetched batch is handed, per owned partition (inputs merged in timestamp
  order), to the app; the rounds of all partitions are written concurrently. With transactions:
  begin, the round's records, the input offsets (``send_offsets_to_transaction``), commit — all
  or nothing. Without (the embedded broker), at-least-once: the round is produced and
  acknowledged, then the offsets are committed; the app's decisions are idempotent, so a
  redelivered input has no effect.
- **Failure.** A fence (another replica owns the partition now: ``ProducerFenced``,
  ``InvalidProducerEpoch``) stops the component with one line saying so. Any other Kafka error
  aborts the round: the app discards it, recovers the partition if part of it may have been
  written, and the inputs are read again from where the app's state stands (an
  :class:`OffsetBook` per input partition), so nothing is lost and a record is folded once
  however often it is fetched. A producer the broker forgot after a restart
  (``OutOfOrderSequenceNumber``, ``UnknownProducerId``) or a broker that stays away raises out
  of :meth:`PartitionLoop.run` as a retriable error (:mod:`mesh.kafka.faults`): the service
  runs the component again with fresh clients, which re-fences and rebuilds its partitions.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, KafkaTimeoutError

from mesh.errors import BrokerError, ConfigError
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import (
    NOT_AUTHORIZED,
    consumer_kwargs,
    kafka_errors,
    producer_kwargs,
)
from mesh.kafka.faults import FENCED, LOST_PRODUCER_STATE, ack_seconds, acknowledged
from mesh.kafka.partitions import cluster_metadata, or_hidden
from mesh.kafka.records import ConsumedRecord
from mesh.kafka.transactions import supports_transactions
from mesh.log import get_logger
from mesh.observe import metrics
from mesh.settings import Settings

_MAX_POLL_SECONDS = 0.5

log = get_logger("mesh.kafka.loop")

K = TypeVar("K", bound=Hashable)


class _HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=_HasOffset)


class OffsetBook(Generic[K]):
    """Which input records the state already includes: the next offset per owned input
    partition.

    The consumer's fetch position and the state can part ways around a rebalance: a batch
    fetched before partitions were revoked may be handled after they were assigned again (and
    the state rebuilt), while the fetcher re-reads from the committed offset. The book holds,
    per input topic-partition, the first offset the state does not include yet, so a record is
    handled once however often it is fetched.
    """

    def __init__(self) -> None:
        self._next: dict[K, int] = {}

    def __contains__(self, tp: object) -> bool:
        return tp in self._next

    def start(self, tp: K, position: int) -> None:
        """Own ``tp`` from ``position`` on (its committed offset after a rebuild)."""
        self._next[tp] = position

    def forget(self, tps: Iterable[K]) -> None:
        """Stop owning ``tps`` (revoked)."""
        for tp in tps:
            self._next.pop(tp, None)

    def next(self, tp: K) -> int | None:
        """Offset of the first record of ``tp`` not handled yet; None if ``tp`` is not owned."""
        return self._next.get(tp)

    def fresh(self, tp: K, records: Sequence[R]) -> list[R]:
        """The records of ``tp`` not handled yet, in order ([] if ``tp`` is not owned)."""
        first = self._next.get(tp)
        if first is None:
            return []
        return [r for r in records if r.offset >= first]

    def advance(self, tp: K, next_offset: int) -> None:
        """Every record of ``tp`` before ``next_offset`` is now handled."""
        if tp in self._next and next_offset > self._next[tp]:
            self._next[tp] = next_offset


class Round(Protocol):
    """One partition's decisions of one pass, to be written as a unit."""

    @property
    def empty(self) -> bool:
        """True when there is nothing to produce (the offsets may still move)."""
        ...

    async def write(self, producer: AIOKafkaProducer, *, transactional: bool) -> None:
        """Produce every record and wait until the broker acknowledged them (inside the
        transaction when ``transactional``)."""
        ...

    def applied(self) -> None:
        """The round is committed: make its state the partition's."""
        ...

    def discarded(self) -> None:
        """The round was given up: its inputs will be read and decided again."""
        ...


@dataclass
class Decided:
    """What the app decided for one partition: the round, and the input offsets to commit
    with it (input partition → next offset to read; none to leave an offset where it is)."""

    round: Round
    commit: dict[TopicPartition, int] = field(default_factory=dict)


class PartitionApp(Protocol):
    """A component run by :class:`PartitionLoop`; all methods run under the loop's lock."""

    name: str
    """The component's name in log lines and errors (``Workflow Manager``)."""
    inputs: tuple[str, ...]
    """Channels consumed in the group, co-partitioned."""
    co_partitioned: tuple[str, ...]
    """Other channels with the inputs' partition count (the app writes partition ``p`` of them)."""
    outputs: tuple[str, ...]
    """Other channels written (they must exist)."""

    def producer_options(self, *, transactional: bool) -> dict[str, Any]:
        """Extra producer settings (batch and request sizes) beyond the connection's."""
        ...

    async def adopt(
        self,
        numbers: Sequence[int],
        partitions: int,
        committed: Mapping[TopicPartition, int | None],
    ) -> None:
        """Build the state of newly owned partitions (after their producers fenced the previous
        owner, before their inputs are read): the state must include exactly the input records
        before ``committed`` (each input partition's committed offset; None: none yet).
        ``partitions`` is the inputs' partition count."""
        ...

    def drop(self, numbers: Sequence[int]) -> None:
        """Forget the state of revoked partitions."""
        ...

    def decide(
        self, number: int, records: Sequence[ConsumedRecord], now: datetime
    ) -> Decided | None:
        """The round for partition ``number`` given its new records (possibly none: due work
        such as timers), or None when there is nothing to do."""
        ...

    async def recover(self, number: int) -> Mapping[TopicPartition, int] | None:
        """A round of ``number`` failed without transactions (part of it may be written):
        bring the state back in line with the log; positions to read the inputs again from, or
        None for where the state stands (the book)."""
        ...

    def wait_seconds(self, now: datetime) -> float | None:
        """How long the loop may wait for input before the app wants a pass (None: no limit)."""
        ...


class PartitionLoop:
    """Runs a :class:`PartitionApp` until stopped: ``await PartitionLoop(...).run(stop)``.

    ``transactional`` None means "use transactions if the broker has them" (asked once at
    start); True insists; False never tries. Replicas sharing ``group_id`` share the
    partitions; a group id must not be shared by meshes with different topic prefixes on one
    cluster (their transactional ids ``<group>-<p>`` would fence each other).
    """

    def __init__(
        self,
        settings: Settings,
        app: PartitionApp,
        *,
        group_id: str,
        transactional: bool | None = None,
        max_records: int = 500,
    ) -> None:
        self.settings = settings
        self.app = app
        self.group_id = group_id
        self.requested_transactional = transactional
        self.transactional: bool | None = None
        """Whether this run uses transactions; known once ``run`` has started."""
        self.max_records = max_records
        self.ready = asyncio.Event()
        """Set once the first assignment is adopted and inputs are consumed."""
        self.partitions = 0
        """The inputs' partition count, known once ``run`` has started."""
        self.lock = asyncio.Lock()
        self.book: OffsetBook[TopicPartition] = OffsetBook()
        self.owned: dict[int, AIOKafkaProducer | None] = {}
        """Partition numbers owned (adopted) now, with their transactional producers."""
        self._channels = {settings.topic(name): name for name in app.inputs}
        self._assignment: set[TopicPartition] = set()
        self._assigned_once = False
        self._pending: set[int] = set()
        self._failure: BaseException | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._plain: AIOKafkaProducer | None = None
        self._ack_seconds = ack_seconds(settings.request_timeout_ms)
        """A round (its records, offsets and commit) not done by then is given up."""

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and decide until ``stop`` is set; raises a ``MeshError`` it cannot get past."""
        wanted = self.requested_transactional
        if wanted is None:
            wanted = await supports_transactions(self.settings, f"{self.group_id}-probe")
        self.transactional = wanted
        consumer = AIOKafkaConsumer(
            **consumer_kwargs(self.settings),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        plain = None
        if not wanted:
            options = {
                **producer_kwargs(self.settings),
                **self.app.producer_options(transactional=False),
            }
            plain = AIOKafkaProducer(**options)
        try:
            with kafka_errors(self.settings, f"connect the {self.app.name} to Kafka"):
                await consumer.start()
                if plain is not None:
                    await plain.start()
            self._consumer, self._plain = consumer, plain
            await self._check_topics(consumer)
            log.info(
                "consuming",
                group_id=self.group_id,
                inputs=list(self.app.inputs),
                transactional=wanted,
            )
            consumer.subscribe(list(self._channels), listener=_Rebalance(self))
            metrics.watch(consumer, self.group_id)
            await self._loop(stop)
        finally:
            try:
                await self._close_all()
            finally:  # even when cancelled meanwhile
                await stop_clients(consumer, plain)
                self._consumer = self._plain = None

    async def _check_topics(self, consumer: AIOKafkaConsumer) -> None:
        app = self.app
        cluster = await cluster_metadata(consumer, self.settings)
        existing = cluster.topics()
        wanted = (*app.inputs, *app.co_partitioned, *app.outputs)
        missing = sorted({self.settings.topic(n) for n in wanted} - set(existing))
        if missing:
            raise ConfigError(
                f"topics missing: {', '.join(missing)}{or_hidden(self.settings, missing)}"
            )
        counts = {
            name: len(cluster.partitions_for_topic(self.settings.topic(name)) or ())
            for name in (*app.inputs, *app.co_partitioned)
        }
        if len(set(counts.values())) != 1:
            raise ConfigError(
                "co-partitioned topics differ in partition count: "
                + ", ".join(f"{n}={c}" for n, c in counts.items())
            )
        self.partitions = next(iter(counts.values()))

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not stop.is_set():
            if self._failure is not None:
                raise self._failure
            if self._pending or (self._assigned_once and not self.ready.is_set()):
                async with self.lock:
                    await self._adopt()
                self.ready.set()
            with kafka_errors(self.settings, f"fetch the {self.app.name}'s inputs"):
                batch = await consumer.getmany(
                    timeout_ms=self._poll_ms(), max_records=self.max_records
                )
            began = time.perf_counter()
            async with self.lock:
                if self._failure is not None:
                    raise self._failure
                await self._pass(batch)
            if batch:
                metrics.consumed(self.group_id, batch)
                metrics.PROCESS_DURATION.labels(self.group_id).observe(time.perf_counter() - began)

    def _poll_ms(self) -> int:
        """Wait no longer than the app allows (nor than half a second, to see ``stop``)."""
        wait = self.app.wait_seconds(_now())
        limit = _MAX_POLL_SECONDS if wait is None else min(_MAX_POLL_SECONDS, wait)
        return max(0, int(limit * 1000))

    async def _pass(self, batch: Mapping[TopicPartition, list[ConsumedRecord]]) -> None:
        """Decide and write one round per owned partition that has something to do."""
        fresh: dict[int, list[list[ConsumedRecord]]] = {}
        read: dict[int, dict[TopicPartition, int]] = {}
        for tp, records in batch.items():
            new = self.book.fresh(tp, records) if tp.partition in self.owned else []
            if new:
                fresh.setdefault(tp.partition, []).append(new)
                read.setdefault(tp.partition, {})[tp] = new[-1].offset + 1
        now = _now()
        jobs: list[tuple[int, Decided]] = []
        for number in sorted(self.owned):
            records = _merged(fresh.get(number, ()))
            await _prepare(self.app, number, records)
            decided = self.app.decide(number, records, now)
            if decided is not None:
                jobs.append((number, decided))
            elif number in read:  # nothing to do with them, but they are handled
                for tp, position in read[number].items():
                    self.book.advance(tp, position)
        if not jobs:
            return
        results = await asyncio.gather(
            *(self._write(number, decided) for number, decided in jobs), return_exceptions=True
        )
        commits: dict[TopicPartition, int] = {}
        for (number, decided), result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            if result:
                for tp, position in read.get(number, {}).items():
                    self.book.advance(tp, position)
                commits.update(decided.commit)
        if commits and not self.transactional:
            consumer = self._consumer
            assert consumer is not None
            try:
                with kafka_errors(self.settings, "commit input offsets"):
                    await consumer.commit(commits)
            except BrokerError as exc:  # a rebalance took them; their next owner re-reads
                log.warning("offsets not committed", error=str(exc))

    async def _write(self, number: int, decided: Decided) -> bool:
        """Write one round (and, with transactions, its offsets); False if it was given up and
        its inputs will be read again."""
        work = decided.round
        producer = self.owned.get(number)
        if work.empty and (not decided.commit or producer is None):
            work.applied()
            return True
        try:
            await acknowledged(self._written(work, decided, producer), self._ack_seconds)
        except NOT_AUTHORIZED as exc:
            # A missing ACL does not heal by reading the inputs again: stop, naming it.
            with kafka_errors(self.settings, f"write the round of partition {number}"):
                raise exc
        except FENCED as exc:
            raise BrokerError(
                f"{self.app.name} fenced on partition {number}: another replica owns it now "
                f"({type(exc).__name__}); restart this one"
            ) from exc
        except LOST_PRODUCER_STATE as exc:
            # The broker forgot this producer's sequence (it restarted): the same producer
            # fails every round; a new one (InitProducerId) and a rebuild go on.
            raise BrokerError(
                f"the producer of partition {number} must start again ({type(exc).__name__})"
            ) from exc
        except KafkaTimeoutError as exc:
            if producer is None:
                await self._recover(number, work, producer, exc)
                return False
            # Whether the commit happened is unknown: only a new producer (InitProducerId ends
            # the transaction either way) and a rebuild from the committed offsets can say.
            raise BrokerError(
                f"the round of partition {number} was not acknowledged in time"
            ) from exc
        except KafkaError as exc:
            await self._recover(number, work, producer, exc)
            return False
        work.applied()
        return True

    async def _written(
        self, work: Round, decided: Decided, producer: AIOKafkaProducer | None
    ) -> None:
        if producer is None:
            plain = self._plain
            assert plain is not None
            await work.write(plain, transactional=False)
        else:
            await producer.begin_transaction()
            await work.write(producer, transactional=True)
            if decided.commit:
                await producer.send_offsets_to_transaction(decided.commit, self.group_id)
            await producer.commit_transaction()
            metrics.TRANSACTIONS.labels(self.group_id, "committed").inc()

    async def _recover(
        self, number: int, work: Round, producer: AIOKafkaProducer | None, error: KafkaError
    ) -> None:
        """Forget a failed round: abort it, let the app recover, and read its inputs again."""
        log.warning(
            "round not written; reading its inputs again",
            partition=number,
            error=f"{type(error).__name__}: {error}",
        )
        work.discarded()
        positions: Mapping[TopicPartition, int] | None = None
        if producer is not None:
            try:
                await acknowledged(producer.abort_transaction(), self._ack_seconds)
                metrics.TRANSACTIONS.labels(self.group_id, "aborted").inc()
            except KafkaError as exc:
                # Retriable if the broker is only away: the service starts the component
                # again, whose new producer (InitProducerId) ends the open transaction.
                raise BrokerError(
                    f"could not abort the transaction of partition {number} ({type(exc).__name__})"
                ) from exc
        else:
            positions = await self.app.recover(number)
        self._rewind(number, positions)

    def _rewind(self, number: int, positions: Mapping[TopicPartition, int] | None) -> None:
        consumer = self._consumer
        assert consumer is not None
        for topic in self._channels:
            tp = TopicPartition(topic, number)
            position = positions.get(tp) if positions is not None else self.book.next(tp)
            if position is not None and tp in self.book:
                self.book.start(tp, position)
                consumer.seek(tp, position)

    # -- ownership -----------------------------------------------------------------------------

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Rebalance callback: pause the new partitions until the loop adopts them."""
        try:
            async with self.lock:
                numbers = {tp.partition for tp in assigned}
                for number in [n for n in self.owned if n not in numbers]:
                    await self._close(number)
                self._assignment = set(assigned)
                self._assigned_once = True
                self._pending = {n for n in numbers if n not in self.owned}
                waiting = [tp for tp in assigned if tp.partition in self._pending]
                if waiting:
                    assert self._consumer is not None
                    self._consumer.pause(*waiting)
            log.info("partitions assigned", partitions=sorted(numbers))
        except Exception as exc:  # aiokafka only logs listener errors; make the loop raise it
            self._failure = exc

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        """Rebalance callback: drop the revoked partitions' state and producers."""
        async with self.lock:
            self.book.forget(revoked)
            self._assignment -= revoked
            numbers = sorted({tp.partition for tp in revoked})
            self._pending -= set(numbers)
            for number in numbers:
                await self._close(number)
        if numbers:
            log.info("partitions revoked", partitions=numbers)

    async def _adopt(self) -> None:
        """Fence, rebuild and resume the pending partitions (under the lock)."""
        numbers = sorted(self._pending)
        consumer = self._consumer
        assert consumer is not None
        began = time.perf_counter()
        try:
            for number in numbers:
                self.owned[number] = await self._open_producer(number)
            tps = [tp for tp in self._assignment if tp.partition in self._pending]
            # Read after fencing: no previous owner can move them any more.
            with kafka_errors(self.settings, "read committed input offsets"):
                committed = {tp: await consumer.committed(tp) for tp in tps}
            await self.app.adopt(numbers, self.partitions, committed)
            with kafka_errors(self.settings, "read committed input offsets"):
                for tp, position in committed.items():
                    # Read again from the committed offset: the rebuilt state includes exactly
                    # the records before it (the fetcher may have read ahead meanwhile).
                    self.book.start(tp, position if position is not None else 0)
                    if position is None:
                        await consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, position)
            if tps:
                consumer.resume(*tps)
        except BaseException:
            for number in numbers:
                await self._close(number)
            raise
        self._pending.clear()
        if numbers:
            metrics.REBUILD_DURATION.labels(self.group_id).observe(time.perf_counter() - began)
            log.info(
                "partitions adopted",
                partitions=numbers,
                seconds=round(time.perf_counter() - began, 4),
            )

    async def _open_producer(self, number: int) -> AIOKafkaProducer | None:
        """With transactions, partition ``number``'s own producer, opened (which fences the
        partition's previous owner); None without."""
        if not self.transactional:
            return None
        options = {
            **producer_kwargs(self.settings),
            **self.app.producer_options(transactional=True),
            # A commit that meets CONCURRENT_TRANSACTIONS (the previous one still completing on
            # the coordinator) is retried after this: aiokafka's 100 ms put the transaction
            # p99 at ~135 ms, 10 ms at ~35 ms.
            "retry_backoff_ms": 10,
        }
        producer = AIOKafkaProducer(**options, transactional_id=f"{self.group_id}-{number}")
        try:
            with kafka_errors(self.settings, f"open the producer of partition {number}"):
                await producer.start()  # InitProducerId: fences the partition's last owner
        except BaseException:
            await stop_clients(producer)
            raise
        return producer

    async def _close(self, number: int) -> None:
        if number not in self.owned:
            return
        producer = self.owned.pop(number)
        self.app.drop([number])
        if producer is not None:
            await stop_clients(producer)
            _forget_failed_transaction(producer)

    async def _close_all(self) -> None:
        """Close every partition's producer, all of them even if cancelled meanwhile."""
        async with self.lock:
            numbers = list(self.owned)
            producers = [self.owned.pop(number) for number in numbers]
            self.app.drop(numbers)
            try:
                await stop_clients(*producers)
            finally:
                for producer in producers:
                    if producer is not None:
                        _forget_failed_transaction(producer)


def _forget_failed_transaction(producer: AIOKafkaProducer) -> None:
    """Mark a fenced producer's transaction error as seen.

    aiokafka leaves it on an internal future nobody awaits once the producer is abandoned, and
    asyncio would report it when that future is collected (noise after a fencing that was
    already reported as such).
    """
    waiter = getattr(getattr(producer, "_txn_manager", None), "_transaction_waiter", None)
    if isinstance(waiter, asyncio.Future) and waiter.done() and not waiter.cancelled():
        waiter.exception()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Hands aiokafka's rebalance callbacks to the loop."""

    def __init__(self, loop: PartitionLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.loop.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.loop.assigned(assigned)


async def _prepare(app: PartitionApp, number: int, records: Sequence[ConsumedRecord]) -> None:
    """The app's optional ``prepare(number, records)``: load what deciding on ``records``
    needs and memory does not hold (the Workflow Manager reads finished workflows back)."""
    prepare = getattr(app, "prepare", None)
    if prepare is not None and records:
        await prepare(number, records)


def _now() -> datetime:
    return datetime.now(UTC)


def _merged(streams: Iterable[list[ConsumedRecord]]) -> list[ConsumedRecord]:
    """Records of several topic-partitions in timestamp order, each keeping its own order."""
    streams = list(streams)
    if len(streams) == 1:
        return streams[0]
    return list(heapq.merge(*streams, key=lambda record: record.timestamp))


__all__ = ["Decided", "OffsetBook", "PartitionApp", "PartitionLoop", "Round"]
