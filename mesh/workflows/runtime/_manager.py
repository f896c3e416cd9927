"""The Workflow Manager process: consume → decide → produce, one partition number at a time.

It runs on the one transactional per-partition loop (:class:`mesh.kafka.loop.PartitionLoop`),
which owns the consumer group (``plans``, ``commands`` and ``tasks.results``, co-partitioned
with ``workflow.events`` and ``workflow.state``), the producers, fencing, commits and aborts.
The manager is the app plugged into it: it keeps the workflows of each owned partition number
(rebuilt from snapshots plus history when the loop adopts the partition, dropped on
revocation) and turns each partition's new records and due timers into a :class:`Work`, which
is written as one round:

- on real Kafka, in one transaction on ``p``'s own producer (transactional id
  ``<group>-<p>``): history, snapshots, dispatches, replies, dead letters and the input
  offsets commit together or not at all;
- without transactions (the embedded broker), at-least-once: everything is produced and
  acknowledged, then the offsets are committed; duplicates after a crash have no effect because
  ``decide`` recognises them from the state. A round that fails half-written is recovered by
  rebuilding the partition from the log.

``ready`` is set once the first assignment is rebuilt and the manager consumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from mesh.errors import MeshError, PayloadError
from mesh.events import ExecutionPlan, Mapper, PlanCreated, Producer
from mesh.kafka.calls import CallServer
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import kafka_errors
from mesh.kafka.faults import mark_serving
from mesh.kafka.history import live_state
from mesh.kafka.loop import Decided, PartitionLoop
from mesh.kafka.payloads import PayloadStore
from mesh.kafka.reader import bounds, reader
from mesh.kafka.records import ConsumedRecord
from mesh.log import get_logger
from mesh.observe import metrics
from mesh.settings import Settings
from mesh.workflows import WorkflowState
from mesh.workflows.runtime._partition import Chunked, Partition, Tracked
from mesh.workflows.runtime._produce import write
from mesh.workflows.runtime._rebuild import (
    Rebuilt,
    partitions_of,
    rebuild_partition,
    rebuilt_counts,
)
from mesh.workflows.runtime._records import COMPONENT, INPUTS
from mesh.workflows.runtime._snapshots import SnapshotPolicy
from mesh.workflows.runtime._work import Work

OUTPUTS = ("tasks.ready", "tasks.assigned", "replies", "dlq")
_HEADROOM_BYTES = 64 * 1024  # record headers and batch overhead above max_event_bytes

log = get_logger("mesh.workflows.runtime")


@dataclass(frozen=True)
class RebuildRecord:
    """One partition rebuild: which workflows it found, in which status, and what it took."""

    partition: int
    statuses: dict[str, str]
    """Workflow id → its status when rebuilt."""
    snapshots: int
    events: int
    seconds: float

    @classmethod
    def of(cls, rebuilt: Rebuilt) -> RebuildRecord:
        return cls(
            partition=rebuilt.partition,
            statuses={wid: t.state.status for wid, t in rebuilt.workflows.items()},
            snapshots=rebuilt.snapshots,
            events=rebuilt.events,
            seconds=rebuilt.seconds,
        )


class WorkflowManager:
    """Runs workflows: ``await WorkflowManager(settings).run(stop)`` until ``stop`` is set.

    ``transactional`` None means "use transactions if the broker has them" (asked once at
    start); True insists; False never tries. Replicas sharing ``group_id`` share the work; a
    group id must not be shared by meshes with different topic prefixes on one cluster (their
    transactional ids ``<group>-<p>`` would fence each other).
    """

    name = "Workflow Manager"
    inputs: tuple[str, ...] = tuple(INPUTS)
    co_partitioned: tuple[str, ...] = ("workflow.events", "workflow.state")
    outputs: tuple[str, ...] = OUTPUTS

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
        self.payloads = PayloadStore(settings, self.mapper, self.me)
        """Reads plans by reference (fetched in ``prepare``, before deciding on them)."""
        self._plans: dict[str, ExecutionPlan | PayloadError] = {}
        self.policy = SnapshotPolicy(snapshot_every)
        self.grace = timedelta(seconds=finished_grace_seconds)
        self.loop = PartitionLoop(
            settings, self, group_id=group_id, transactional=transactional, max_records=max_records
        )
        self.partitions: dict[int, Partition] = {}
        """The workflows of each owned partition number."""
        self.rebuilds: list[RebuildRecord] = []
        """What every partition rebuild of this run found, in order (for tests and figures):
        not the states themselves, which the partitions hold, so a replica that rebuilds after
        each fault or rebalance keeps no stale copy of a large workflow."""
        self._channels = {settings.topic(name): name for name in INPUTS}
        metrics.count_workflows(self._statuses)

    # -- what tests and operators may look at -------------------------------------------------

    def _statuses(self) -> dict[str, int]:
        """Workflows held in memory, by status (for ``mesh_workflows``)."""
        return rebuilt_counts(
            {k: v for p in list(self.partitions.values()) for k, v in p.workflows.items()}
        )

    @property
    def ready(self) -> asyncio.Event:
        """Set once the first assignment's partitions are rebuilt and inputs are consumed."""
        return self.loop.ready

    @property
    def transactional(self) -> bool | None:
        """Whether this run uses transactions; known once ``run`` has started."""
        return self.loop.transactional

    @property
    def assigned(self) -> list[int]:
        """Partition numbers owned (and rebuilt) now."""
        return sorted(self.partitions)

    def workflow(self, workflow_id: str) -> WorkflowState | None:
        """The in-memory state of a workflow this replica owns, if it holds one (a finished
        one leaves memory once its final snapshot is written: see ``finished``)."""
        for partition in self.partitions.values():
            tracked = partition.workflows.get(workflow_id)
            if tracked is not None:
                return tracked.state
        return None

    def finished(self, workflow_id: str) -> bool:
        """Whether the workflow finished here and is now held on Kafka only."""
        return any(workflow_id in p.ended for p in self.partitions.values())

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and decide until ``stop`` is set; raises a ``MeshError`` it cannot get past."""
        calls = CallServer(
            self.settings,
            "workflow-manager",
            {"get_workflow_status": self._get_workflow_status},
            me=self.me,
            group_id=f"{self.group_id}-calls",
        )
        calls_stop = asyncio.Event()
        calls_task = asyncio.get_running_loop().create_task(calls.run(calls_stop))
        announcer = asyncio.get_running_loop().create_task(self._announce())
        try:
            await self.loop.run(stop)
        finally:
            await self.payloads.close()
            calls_stop.set()
            announcer.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await announcer
            with contextlib.suppress(Exception):
                await calls_task
        log.info("workflows stopped")

    async def _announce(self) -> None:
        await self.loop.ready.wait()
        mark_serving()
        log.info(
            "workflows ready",
            group_id=self.group_id,
            partitions=self.assigned,
            transactional=self.transactional,
        )

    async def _get_workflow_status(self, args: dict[str, Any]) -> Any:
        """The API's ``get_workflow_status``: the workflow as Kafka has it (its snapshot plus the
        history after it, as a rebuild reads it), so any replica answers for any workflow,
        whichever replica owns its partition."""
        workflow_id = args.get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise ValueError("'workflow_id' is required")
        live = await live_state(self.settings, workflow_id)
        state = live.state.model_dump(mode="json", exclude={"plan"})
        return {**state, "events": live.state.sequence}

    # -- the app the loop runs -----------------------------------------------------------------

    def producer_options(self, *, transactional: bool) -> dict[str, Any]:
        options: dict[str, Any] = {"max_request_size": self._batch_bytes() + _HEADROOM_BYTES}
        if not transactional:  # batches as large as a request, so a round's history fits one
            options["max_batch_size"] = self._batch_bytes()
        return options

    async def adopt(
        self,
        numbers: Sequence[int],
        partitions: int,
        committed: Mapping[TopicPartition, int | None],
    ) -> None:
        for number in numbers:
            self.partitions[number] = Partition(number, self.grace)
        began = time.perf_counter()
        for rebuilt in await self.rebuild(numbers):
            self.partitions[rebuilt.partition].load(rebuilt.workflows, rebuilt.end_offset)
            metrics.WORKFLOWS_REBUILT.inc(len(rebuilt.workflows))
        log.info(
            "partitions rebuilt",
            partitions=list(numbers),
            workflows=sum(len(self.partitions[n].workflows) for n in numbers),
            seconds=round(time.perf_counter() - began, 4),
        )

    async def prepare(self, number: int, records: Sequence[ConsumedRecord]) -> None:
        """Read back from Kafka the finished workflows (out of memory since their final
        snapshot) that ``records`` are for, so they are decided on as they stand: a late
        result, a repeated plan or a RetryTask meets the finished workflow, not nothing.
        Fetch the plans by reference of ``records``' PlanCreated (deciding is synchronous)."""
        await self._fetch_plans(records)
        partition = self.partitions.get(number)
        if partition is None or not partition.ended:
            return
        wanted = {
            key
            for record in records
            if record.key is not None
            and (key := record.key.decode(errors="replace")) in partition.ended
        }
        for workflow_id in sorted(wanted):
            try:
                live = await live_state(self.settings, workflow_id)
            except MeshError as exc:  # its inputs are refused (see Work) rather than misread
                log.error(
                    "finished workflow not read back", workflow_id=workflow_id, error=str(exc)
                )
                continue
            snapshot = live.snapshot
            chunks = (
                Chunked(snapshot.snapshot_id, snapshot.chunks)
                if snapshot is not None and snapshot.snapshot_id is not None and snapshot.chunks
                else None
            )
            last = live.tail[-1].offset if live.tail else None
            if last is None and snapshot is not None:
                last = snapshot.history_offset
            tracked = Tracked(
                live.state,
                last_offset=last,
                since_snapshot=len(live.tail),
                snapshotted=True,
                chunks=chunks,
            )
            partition.restore(workflow_id, tracked)
            log.debug("finished workflow read back", workflow_id=workflow_id)

    async def _fetch_plans(self, records: Sequence[ConsumedRecord]) -> None:
        """Plans by reference of the PlanCreated in ``records``, or why they cannot be used
        (the record is then dead-lettered with that reason)."""
        self._plans = {}
        plans_topic = self.settings.topic("plans")
        for record in records:
            if record.topic != plans_topic:
                continue
            try:
                event = self.mapper.decode_record(record)
            except MeshError:
                continue  # dead-lettered when decided on
            if not isinstance(event, PlanCreated) or event.plan_ref is None or event.plan:
                continue
            try:
                self._plans[event.plan_ref.payload_id] = await self.payloads.plan(event.plan_ref)
            except PayloadError as exc:
                log.error(
                    "plan by reference unusable", workflow_id=event.workflow_id, error=str(exc)
                )
                self._plans[event.plan_ref.payload_id] = exc

    def drop(self, numbers: Sequence[int]) -> None:
        for number in numbers:
            self.partitions.pop(number, None)

    def decide(
        self, number: int, records: Sequence[ConsumedRecord], now: datetime
    ) -> Decided | None:
        partition = self.partitions.get(number)
        if partition is None:
            return None
        due = partition.timers.pop_due(now)
        if not records and not due:
            return None
        work = Work(
            partition,
            mapper=self.mapper,
            me=self.me,
            policy=self.policy,
            channels=self._channels,
            partitions=self.loop.partitions,
            clock=_now,
            plans=self._plans,
        )
        read: dict[TopicPartition, int] = {}
        for record in records:
            work.handle(record)
            read[TopicPartition(record.topic, record.partition)] = record.offset + 1
        for workflow_id in due:
            work.tick(workflow_id)
        return Decided(_Written(work, self), read)

    async def recover(self, number: int) -> Mapping[TopicPartition, int] | None:
        """Part of the round may be written: rebuild the partition from the log."""
        (rebuilt,) = await self.rebuild([number])
        self.partitions[number].load(rebuilt.workflows, rebuilt.end_offset)
        return None

    def wait_seconds(self, now: datetime) -> float | None:
        """Until the next timer of any owned partition."""
        instants = [at for p in self.partitions.values() if (at := p.timers.next_at())]
        return (min(instants) - now).total_seconds() if instants else None

    async def rebuild(self, numbers: Sequence[int]) -> list[Rebuilt]:
        """Rebuild partitions from ``workflow.state`` and ``workflow.events``; logs each."""
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
                    payloads=self.payloads,
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
        self.rebuilds.extend(RebuildRecord.of(r) for r in results)
        return results

    def _batch_bytes(self) -> int:
        """Room for the largest event in one record batch (the broker's default 1 MiB)."""
        return max(1_048_576, self.settings.max_event_bytes + _HEADROOM_BYTES)

    def _history_batch_bytes(self) -> int:
        """Most bytes of history put in one record batch: under the topic's 1 MiB
        ``max.message.bytes`` with the default ``max_event_bytes``, yet room for the largest
        event when that is raised (and the topics with it)."""
        return max(960 * 1024, self.settings.max_event_bytes + 4096)


class _Written:
    """A :class:`Work` as the loop's round: written by ``_produce.write``."""

    def __init__(self, work: Work, manager: WorkflowManager) -> None:
        self.work = work
        self.manager = manager

    @property
    def empty(self) -> bool:
        return self.work.empty

    async def write(self, producer: AIOKafkaProducer, *, transactional: bool) -> None:
        manager = self.manager
        await write(
            producer,
            self.work,
            manager.settings.topic,
            at_least_once=not transactional,
            batch_bytes=manager._history_batch_bytes(),
        )

    def applied(self) -> None:
        self.work.apply()
        metrics.decided(self.work.history)
        log.debug("round written", partition=self.work.partition.number, **vars(self.work.counts))

    def discarded(self) -> None:
        self.work.discard()


def _now() -> datetime:
    return datetime.now(UTC)
