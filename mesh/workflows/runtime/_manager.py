"""The Workflow Manager process: consume → decide → produce, one partition number at a time.

A consumer in group ``group_id`` (manual commits, read_committed, RangeAssignor, so the replica
that owns partition ``p`` of one co-partitioned input owns ``p`` of all) fetches ``plans``,
``commands`` and ``tasks.results`` in batches. Per owned partition ``p`` and round, a
:class:`Work` decides on the new records and due timers, and the result is produced:

- on real Kafka, in one transaction on ``p``'s own producer (transactional id
  ``<group>-<p>``, opened on assignment, which fences any zombie still writing as ``p``'s
  owner, and closed on revocation): history, snapshots, dispatches, replies, dead letters and
  the input offsets (``send_offsets_to_transaction``) commit together or not at all;
- without transactions (the embedded broker), at-least-once: everything is produced and
  acknowledged, then the offsets are committed; duplicates after a crash have no effect because
  ``decide`` recognises them from the state.

Every assignment rebuilds the assigned partitions before their inputs are handled and
revocation drops their state (``_ownership``). ``ready`` is set once the first assignment is
rebuilt and the manager consumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from mesh.errors import BrokerError, ConfigError
from mesh.events import Mapper, Producer
from mesh.kafka.calls import CallServer
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.partitions import cluster_metadata
from mesh.kafka.transactions import supports_transactions
from mesh.log import get_logger
from mesh.settings import Settings
from mesh.workflows import WorkflowState
from mesh.workflows.runtime._ownership import Ownership, Rebalance
from mesh.workflows.runtime._produce import write
from mesh.workflows.runtime._rebuild import Rebuilt
from mesh.workflows.runtime._records import COMPONENT, INPUTS
from mesh.workflows.runtime._replay import replay_workflow
from mesh.workflows.runtime._snapshots import SnapshotPolicy
from mesh.workflows.runtime._work import Work

OUTPUTS = ("workflow.events", "workflow.state", "tasks.ready", "tasks.assigned", "replies", "dlq")
_CO_PARTITIONED = (*INPUTS, "workflow.events", "workflow.state")
_FATAL = (
    ProducerFenced,
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    TransactionalIdAuthorizationFailed,
)
_MAX_POLL_SECONDS = 0.5
_HEADROOM_BYTES = 64 * 1024  # record headers and batch overhead above max_event_bytes

log = get_logger("mesh.workflows.runtime")


class WorkflowManager:
    """Runs workflows: ``await WorkflowManager(settings).run(stop)`` until ``stop`` is set.

    ``transactional`` None means "use transactions if the broker has them" (asked once at
    start); True insists; False never tries. Replicas sharing ``group_id`` share the work; a
    group id must not be shared by meshes with different topic prefixes on one cluster (their
    transactional ids ``<group>-<p>`` would fence each other).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str = "mesh-workflows",
        instance: str | None = None,
        snapshot_every: int = 100,
        finished_grace_seconds: float = 3600,
        transactional: bool | None = None,
        max_records: int = 500,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        host = "".join(socket.gethostname().split()) or "host"
        self.instance = instance or f"{host}-{os.getpid()}"
        self.me = Producer(component=COMPONENT, instance=self.instance)
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.policy = SnapshotPolicy(snapshot_every)
        self.requested_transactional = transactional
        self.transactional: bool | None = None
        """Whether this run uses transactions; known once ``run`` has started."""
        self.max_records = max_records
        self.ready = asyncio.Event()
        """Set once the first assignment's partitions are rebuilt and inputs are consumed."""
        self._channels = {settings.topic(name): name for name in INPUTS}
        self._own = Ownership(
            settings,
            group_id=group_id,
            grace=timedelta(seconds=finished_grace_seconds),
            mapper=self.mapper,
            producer_kwargs=self._producer_kwargs,
            inputs=self._channels,
        )
        self._consumer: Any = None
        self._plain: Any = None
        self._partition_count = 0

    # -- what tests and operators may look at -------------------------------------------------

    @property
    def assigned(self) -> list[int]:
        """Partition numbers owned (and rebuilt) now."""
        return sorted(self._own.partitions)

    @property
    def rebuilds(self) -> list[Rebuilt]:
        """Every partition rebuild of this run, in order (for logs, tests and figures)."""
        return self._own.rebuilds

    def workflow(self, workflow_id: str) -> WorkflowState | None:
        """The in-memory state of a workflow this replica owns, if it holds one."""
        for partition in self._own.partitions.values():
            tracked = partition.workflows.get(workflow_id)
            if tracked is not None:
                return tracked.state
        return None

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and decide until ``stop`` is set; raises a ``MeshError`` it cannot get past."""
        wanted = self.requested_transactional
        if wanted is None:
            wanted = await supports_transactions(self.settings, f"{self.group_id}-probe")
        self.transactional = self._own.transactional = wanted
        consumer = AIOKafkaConsumer(
            **client_kwargs(self.settings),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        plain = None
        if not wanted:  # batches as large as a request, so a round's history fits one
            batch = self._batch_bytes()
            plain = AIOKafkaProducer(**self._producer_kwargs(), acks="all", max_batch_size=batch)
        log.info("workflows starting", group_id=self.group_id, transactional=wanted)
        calls = CallServer(
            self.settings,
            "workflow-manager",
            {"get_workflow_status": self._get_workflow_status},
            me=self.me,
            group_id=f"{self.group_id}-calls",
        )
        calls_stop = asyncio.Event()
        calls_task = asyncio.get_running_loop().create_task(calls.run(calls_stop))
        try:
            with kafka_errors(self.settings, "connect the Workflow Manager to Kafka"):
                await consumer.start()
                if plain is not None:
                    await plain.start()
            self._consumer = self._own.consumer = consumer
            self._plain = plain
            await self._check_topics(consumer)
            consumer.subscribe(list(self._channels), listener=Rebalance(self._own))
            await self._loop(stop)
        finally:
            calls_stop.set()
            try:
                with contextlib.suppress(Exception):
                    await calls_task
                await self._own.close_all()
            finally:  # even when cancelled meanwhile
                await stop_clients(consumer, plain)
                self._consumer = self._plain = self._own.consumer = None
        log.info("workflows stopped")

    async def _get_workflow_status(self, args: dict[str, Any]) -> Any:
        """The API's ``get_workflow_status``: the workflow rebuilt from Kafka, so any replica
        answers for any workflow, whichever replica owns its partition."""
        workflow_id = args.get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise ValueError("'workflow_id' is required")
        replayed = await replay_workflow(self.settings, workflow_id)
        state = replayed.state.model_dump(mode="json", exclude={"plan"})
        return {**state, "events": replayed.event_count}

    async def _check_topics(self, consumer: Any) -> None:
        cluster = await cluster_metadata(consumer, self.settings)
        existing = cluster.topics()
        names = [self.settings.topic(n) for n in (*_CO_PARTITIONED, *OUTPUTS)]
        missing = sorted({n for n in names if n not in existing})
        if missing:
            raise ConfigError(
                f"topics missing: {', '.join(missing)}; create them with 'mesh topics apply'"
            )
        counts = {
            n: len(cluster.partitions_for_topic(self.settings.topic(n)) or ())
            for n in _CO_PARTITIONED
        }
        if len(set(counts.values())) != 1:
            raise ConfigError(
                "co-partitioned topics differ in partition count: "
                + ", ".join(f"{n}={c}" for n, c in counts.items())
            )
        self._partition_count = next(iter(counts.values()))

    def _producer_kwargs(self) -> dict[str, Any]:
        limit = self._batch_bytes() + _HEADROOM_BYTES
        return {**client_kwargs(self.settings), "max_request_size": limit}

    def _batch_bytes(self) -> int:
        """Room for the largest event in one record batch (the broker's default 1 MiB)."""
        return max(1_048_576, self.settings.max_event_bytes + _HEADROOM_BYTES)

    def _history_batch_bytes(self) -> int:
        """Most bytes of history put in one record batch: under the topic's 1 MiB
        ``max.message.bytes`` with the default ``max_event_bytes``, yet room for the largest
        event when that is raised (and the topics with it)."""
        return max(960 * 1024, self.settings.max_event_bytes + 4096)

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        while not stop.is_set():
            if self._own.failure is not None:
                raise self._own.failure
            if self._own.to_adopt or (self._own.assigned_once and not self.ready.is_set()):
                async with self._own.lock:
                    await self._own.adopt()
                self._announce_ready()
            with kafka_errors(self.settings, "fetch workflow inputs"):
                batch = await consumer.getmany(
                    timeout_ms=self._poll_ms(), max_records=self.max_records
                )
            async with self._own.lock:
                if self._own.failure is not None:
                    raise self._own.failure
                await self._round(batch)

    def _announce_ready(self) -> None:
        if not self.ready.is_set():
            self.ready.set()
            log.info(
                "workflows ready",
                group_id=self.group_id,
                partitions=self.assigned,
                transactional=self.transactional,
            )

    def _poll_ms(self) -> int:
        """Sleep no longer than until the next timer (nor than half a second, to see ``stop``)."""
        instants = [at for p in self._own.partitions.values() if (at := p.timers.next_at())]
        wait = _MAX_POLL_SECONDS
        if instants:
            wait = min(wait, (min(instants) - _now()).total_seconds())
        return max(0, int(wait * 1000))

    async def _round(self, batch: dict[TopicPartition, list[Any]]) -> None:
        inputs: dict[int, list[tuple[TopicPartition, list[Any]]]] = {}
        for tp, records in batch.items():
            fresh = (
                self._own.book.fresh(tp, records) if tp.partition in self._own.partitions else []
            )
            if fresh:
                inputs.setdefault(tp.partition, []).append((tp, fresh))
        now = _now()
        jobs: list[tuple[Work, dict[TopicPartition, int]]] = []
        for number, partition in self._own.partitions.items():
            mine = inputs.get(number, [])
            due = partition.timers.pop_due(now)
            if not mine and not due:
                continue
            work = Work(
                partition,
                mapper=self.mapper,
                me=self.me,
                policy=self.policy,
                channels=self._channels,
                partitions=self._partition_count,
                clock=_now,
            )
            for record in _merged(records for _, records in mine):
                work.handle(record)
            for workflow_id in due:
                work.tick(workflow_id)
            jobs.append((work, {tp: records[-1].offset + 1 for tp, records in mine}))
        if not jobs:
            return
        results = await asyncio.gather(
            *(self._flush(work, offsets) for work, offsets in jobs), return_exceptions=True
        )
        committed: dict[TopicPartition, int] = {}
        for (_, offsets), result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            if result:
                committed.update(offsets)
        for tp, offset in committed.items():
            self._own.book.advance(tp, offset)
        if committed and not self.transactional:
            try:
                with kafka_errors(self.settings, "commit input offsets"):
                    await self._consumer.commit(committed)
            except BrokerError as exc:  # a rebalance took them; their next owner re-reads
                log.warning("offsets not committed", error=str(exc))

    async def _flush(self, work: Work, offsets: dict[TopicPartition, int]) -> bool:
        """Produce one partition's work (and, with transactions, its offsets); False if it was
        given up and the inputs will be read again."""
        partition = work.partition
        producer = partition.producer
        if work.empty and (not offsets or producer is None):
            work.apply()
            return True
        try:
            if producer is None:
                await write(
                    self._plain,
                    work,
                    self.settings.topic,
                    at_least_once=True,
                    batch_bytes=self._history_batch_bytes(),
                )
            else:
                await producer.begin_transaction()
                await write(producer, work, self.settings.topic, at_least_once=False)
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.group_id)
                await producer.commit_transaction()
        except _FATAL as exc:
            raise BrokerError(
                f"Workflow Manager fenced on partition {partition.number}: another replica "
                f"owns it now ({type(exc).__name__}); restart this one"
            ) from exc
        except KafkaError as exc:
            await self._recover(work, exc)
            return False
        work.apply()
        counts = work.counts
        log.debug("round written", partition=partition.number, **vars(counts))
        return True

    async def _recover(self, work: Work, error: KafkaError) -> None:
        """Forget a failed round: abort, re-read its inputs, and without transactions rebuild
        the partition from the log (part of the round may have been written)."""
        partition = work.partition
        log.warning(
            "round not written; reading its inputs again",
            partition=partition.number,
            error=f"{type(error).__name__}: {error}",
        )
        work.discard()
        if partition.producer is not None:
            try:
                await partition.producer.abort_transaction()
            except KafkaError as exc:
                raise BrokerError(
                    f"could not abort the transaction of partition {partition.number} "
                    f"({type(exc).__name__}); restart the Workflow Manager"
                ) from exc
        else:
            (rebuilt,) = await self._own.rebuild([partition.number])
            partition.load(rebuilt.workflows, rebuilt.end_offset)
        self._own.rewind(partition.number)


def _now() -> datetime:
    return datetime.now(UTC)


def _merged(streams: Iterable[list[Any]]) -> list[Any]:
    """Records of several topic-partitions in timestamp order, each keeping its own order."""
    return list(heapq.merge(*streams, key=lambda record: record.timestamp))
