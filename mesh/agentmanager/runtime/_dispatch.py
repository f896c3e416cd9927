"""The simple dispatcher: ``tasks.ready`` in, ``TaskAssigned`` to one live, capable agent out.

It stands in for the Agent Manager's assignment path until that exists, with the same inputs
and outputs, so it can be replaced without touching agents or the Workflow Manager:

- the agent view (:class:`AgentDirectory`) is folded from ``agents``, ``agents.heartbeats`` and
  ``tasks.results`` read from the beginning with no group, so every replica rebuilds it alone;
- ``tasks.ready`` is consumed in a group; each assignment goes to ``tasks.assigned`` keyed by the
  agent id (only that agent acts on it) and, the same event, to ``tasks.results`` keyed by the
  workflow id (so the Workflow Manager records it in order with the attempt's results);
- a task no live agent can run waits in memory and is placed as soon as one registers; its
  offset is not committed while it waits, so a crash re-reads it rather than losing it.

Exactly once on a broker with transactions: per ``tasks.ready`` partition, the assignments of a
round, any dead letters and the partition's next offset are one transaction. Each partition has
its own transactional id ``<group>-<topic>-<partition>``, opened on assignment and closed on
revocation: aiokafka's ``send_offsets_to_transaction`` sends no group metadata (no KIP-447), so
only a per-partition id lets the next owner's ``init_transactions`` fence a zombie that still
believes it owns the partition (DESIGN.md). One id per instance would not: a new owner has a
different id and could not fence the old one. Before reading a newly assigned partition the
dispatcher catches its view up to the current end of ``tasks.results``, so assignments committed
by the previous owner are known and their ``TaskReady`` records are skipped, not dispatched twice.

Without transactions (the embedded broker) the same steps run at-least-once: produce, wait for
acknowledgements, then commit the offset.

With the resource gate on (``resource_gate``, ``MESH_RESOURCE_GATE``; the Resource Allocator is
part of the deployment) the view also folds ``resources``, and an attempt is placed only once its
allocation exists; a denied one is failed instead, in the same transaction (see ``_gate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from mesh._aio import cancel_and_wait
from mesh.agentmanager._directory import AgentDirectory, AttemptKey
from mesh.agentmanager._gate import (
    UNANSWERED_SECONDS,
    ResourceGate,
    ended_notice,
    queued_notice,
    unanswered_notice,
)
from mesh.agentmanager._matching import LIVENESS_INTERVALS, AgentView, choose_agent
from mesh.errors import BrokerError, EventError
from mesh.events import (
    AgentHeartbeat,
    Encoded,
    Mapper,
    Producer,
    ResourceDenied,
    ResourceQueued,
    ResourceReleased,
    TaskAssigned,
    TaskFailed,
    TaskReady,
    TaskWaiting,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.dlq import dead_letter
from mesh.kafka.partitions import partitions_of
from mesh.log import get_logger
from mesh.settings import Settings

COMPONENT = "dispatcher"
_POLL_MS = 200
_REPLACE_EVERY_SECONDS = 1.0  # re-run placement this often even if nothing changed (liveness)
_PROBE_SECONDS = 15.0
_FATAL = (ProducerFenced, OutOfOrderSequenceNumber, TransactionalIdAuthorizationFailed)

log = get_logger("mesh.agents.dispatcher")

Outgoing = tuple[str, Encoded]
"""(topic, record)"""


@dataclass
class _Pending:
    offset: int
    ready: TaskReady
    record: Any
    since: float = field(default_factory=time.monotonic)
    announced: bool = False
    noted: str | None = None
    """The resource queue reason already published for this attempt (a TaskWaiting)."""
    noting: str | None = None
    """The one in this round's output, noted once the round is flushed."""

    @property
    def key(self) -> AttemptKey:
        return (self.ready.workflow_id, self.ready.task_id, self.ready.attempt)


@dataclass
class _Partition:
    """One owned ``tasks.ready`` partition: what is waiting, what is committed."""

    tp: TopicPartition
    committed: int | None
    next_offset: int | None
    producer: AIOKafkaProducer | None = None
    pending: list[_Pending] = field(default_factory=list)
    keys: set[AttemptKey] = field(default_factory=set)
    outbox: list[Outgoing] = field(default_factory=list)

    def watermark(self, waiting: Sequence[_Pending]) -> int | None:
        """Where a re-read must start: the oldest waiting task, else past the last record."""
        return min(p.offset for p in waiting) if waiting else self.next_offset


class Dispatcher:
    """Assigns ready tasks to agents: ``await Dispatcher(settings).run(stop)``.

    ``transactional`` None means "use transactions if the broker has them" (probed once at
    start); True insists, False never tries.
    """

    VIEW_TOPICS: tuple[str, ...] = ("agents", "agents.heartbeats", "tasks.results")
    """Topics folded into the agent view (a subclass may follow more, e.g. ``breakers``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str = "mesh-dispatcher",
        transactional: bool | None = None,
        instance: str | None = None,
        liveness_intervals: float = LIVENESS_INTERVALS,
        resource_gate: bool | None = None,
    ) -> None:
        self.settings = settings
        self.resource_gate = settings.resource_gate if resource_gate is None else resource_gate
        """Place an attempt only once the Resource Allocator granted it (None: from settings)."""
        if self.resource_gate:
            self.VIEW_TOPICS = (*self.VIEW_TOPICS, "resources")
        self.gate = ResourceGate()
        self.group_id = group_id
        self.requested_transactional = transactional
        self.transactional: bool | None = None
        """Whether this run uses transactions; set once ``run`` has started."""
        self.liveness_intervals = liveness_intervals
        host = "".join(socket.gethostname().split()) or "host"
        self.me = Producer(component=COMPONENT, instance=instance or f"{host}-{os.getpid()}")
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.directory = AgentDirectory()
        self._parts: dict[TopicPartition, _Partition] = {}
        self._lock = asyncio.Lock()
        self._view_moved = asyncio.Event()
        self._failure: BaseException | None = None
        self._view: AIOKafkaConsumer | None = None
        self._ready: AIOKafkaConsumer | None = None
        self._plain: AIOKafkaProducer | None = None
        self._view_tps: list[TopicPartition] = []
        self._follower: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set."""
        wanted = self.requested_transactional
        self.transactional = wanted if wanted is not None else await self.supports_transactions()
        log.info(
            "agent manager starting",
            group_id=self.group_id,
            transactional=self.transactional,
            resource_gate=self.resource_gate,
        )
        async with self._clients():
            follower = self._follower = asyncio.create_task(self._follow())
            try:
                await self._catch_up()
                self._ready_consumer.subscribe(
                    [self.settings.topic("tasks.ready")], listener=_Rebalance(self)
                )
                log.info(
                    "agent manager ready",
                    agents=len(self.directory.agent_ids),
                    transactional=self.transactional,
                )
                await self._loop(stop, follower)
            finally:
                await cancel_and_wait(follower)
        log.info("agent manager stopped")

    async def supports_transactions(self) -> bool:
        """True if the broker lets a transactional producer initialise (real Kafka does)."""
        probe = AIOKafkaProducer(
            **client_kwargs(self.settings), transactional_id=f"{self.group_id}-probe"
        )
        try:
            async with asyncio.timeout(_PROBE_SECONDS):
                await probe.start()
        except (KafkaConnectionError, OSError) as exc:
            with kafka_errors(self.settings, "connect the dispatcher to Kafka"):
                raise exc
        except (KafkaError, TimeoutError) as exc:
            log.info("no transactions on this broker; dispatching at-least-once", error=str(exc))
            return False
        finally:
            await stop_clients(probe)
        return True

    @contextlib.asynccontextmanager
    async def _clients(self) -> AsyncIterator[None]:
        kwargs = client_kwargs(self.settings)
        view = AIOKafkaConsumer(
            **kwargs,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        ready = AIOKafkaConsumer(
            **kwargs,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        # The plain producer sends without transactions, and in both modes reads metadata.
        plain = AIOKafkaProducer(**kwargs, acks="all")
        try:
            with kafka_errors(self.settings, "connect the dispatcher to Kafka"):
                await view.start()
                await ready.start()
                await plain.start()
            self._view, self._ready, self._plain = view, ready, plain
            for name in ("tasks.ready", "tasks.assigned", "dlq"):
                await partitions_of(plain, self.settings, name)  # fail early if one is missing
            self._view_tps = [
                TopicPartition(self.settings.topic(name), p)
                for name in self.VIEW_TOPICS
                for p in await partitions_of(plain, self.settings, name)
            ]
            view.assign(self._view_tps)
            await view.seek_to_beginning(*self._view_tps)
            yield
        finally:
            # Leaving the group first revokes (and closes) the partitions; whatever is still
            # open then is closed here, all of it even if this task is cancelled meanwhile.
            producers = [part.producer for part in self._parts.values()]
            try:
                await stop_clients(ready, *producers, view, plain)
            finally:
                self._parts.clear()

    # -- the agent view ----------------------------------------------------------------------

    async def _follow(self) -> None:
        """Fold ``agents``, ``agents.heartbeats`` and ``tasks.results`` into the directory."""
        view = self._view_consumer
        agents, beats = self.settings.topic("agents"), self.settings.topic("agents.heartbeats")
        while True:
            with kafka_errors(self.settings, "read the agent registry"):
                batch = await view.getmany(timeout_ms=500, max_records=1_000)
            for tp, records in batch.items():
                for record in records:
                    self._fold(tp.topic, record, agents, beats)
            self._view_moved.set()

    def _fold(self, topic: str, record: Any, agents: str, beats: str) -> None:
        if self.resource_gate and topic == self.settings.topic("resources"):
            self._fold_resources(record)
            return
        if topic == agents and record.value is None:
            if record.key is not None:
                self.directory.on_registry(record.key.decode(errors="replace"), None)
            return
        try:
            event = self.mapper.decode(record.value, record.headers)
        except EventError as exc:
            log.warning(
                "unreadable record skipped", topic=topic, offset=record.offset, error=str(exc)
            )
            return
        if topic == agents:
            key = getattr(event, "agent_id", None)
            if isinstance(key, str):
                self.directory.on_registry(key, event)
        elif topic == beats:
            if isinstance(event, AgentHeartbeat):
                self.directory.on_heartbeat(event)
        else:
            self.directory.on_result(event)

    def _fold_resources(self, record: Any) -> None:
        """Allocations for the gate; the allocator dead-letters what it cannot read."""
        if record.value is None:
            if record.key is not None:
                self.gate.forget(record.key.decode(errors="replace"))
            return
        try:
            self.gate.fold(self.mapper.decode(record.value, record.headers))
        except EventError as exc:
            log.warning("unreadable resources record skipped", offset=record.offset, error=str(exc))

    async def _catch_up(self) -> None:
        """Wait until the view has read everything committed so far on its topics."""
        view, follower = self._view_consumer, self._follower
        with kafka_errors(self.settings, "read the end of the agent registry"):
            targets = await view.end_offsets(self._view_tps)
        while True:
            if follower is not None and follower.done():
                follower.result()
            behind = [tp for tp, end in targets.items() if await view.position(tp) < end]
            if not behind:
                return
            self._view_moved.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._view_moved.wait()

    # -- the ready loop ----------------------------------------------------------------------

    async def _loop(self, stop: asyncio.Event, follower: asyncio.Task[None]) -> None:
        ready = self._ready_consumer
        seen_version: tuple[int, int] = (-1, -1)
        last_round = 0.0
        while not stop.is_set():
            if follower.done():
                follower.result()  # the view died: raise its error
            if self._failure is not None:
                raise self._failure
            with kafka_errors(self.settings, "read ready tasks"):
                batch = await ready.getmany(timeout_ms=_POLL_MS, max_records=500)
            async with self._lock:
                for tp, records in batch.items():
                    self._take(tp, records)
                due = time.monotonic() - last_round >= _REPLACE_EVERY_SECONDS
                version = (self.directory.version, self.gate.version)
                if batch or due or version != seen_version:
                    seen_version = version
                    last_round = time.monotonic()
                    await self._round()

    def _take(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        part = self._parts.get(tp)
        if part is None:
            return  # revoked since the fetch
        for record in records:
            if part.next_offset is not None and record.offset < part.next_offset:
                continue
            part.next_offset = record.offset + 1
            try:
                event = self.mapper.decode(record.value, record.headers)
                if not isinstance(event, TaskReady):
                    raise EventError(f"{event.type} does not belong on tasks.ready")
            except EventError as exc:
                self._dead_letter(part, record, exc)
                continue
            pending = _Pending(record.offset, event, record)
            if self.directory.is_assigned(pending.key) or pending.key in part.keys:
                log.info(
                    "task already assigned; skipped",
                    workflow_id=event.workflow_id,
                    task_id=event.task_id,
                    attempt=event.attempt,
                )
                continue
            part.pending.append(pending)
            part.keys.add(pending.key)

    def _dead_letter(self, part: _Partition, record: Any, error: BaseException) -> None:
        log.warning(
            "unprocessable ready record sent to the dead-letter topic",
            partition=record.partition,
            offset=record.offset,
            error=str(error),
        )
        letter = dead_letter(
            record,
            error,
            COMPONENT,
            producer=self.me,
            max_event_bytes=self.settings.max_event_bytes,
        )
        part.outbox.append((self.settings.topic("dlq"), letter))

    async def _round(self) -> None:
        """Place what waits, then flush each partition's output with its next offset."""
        now = datetime.now(UTC)
        views = {view.agent_id: view for view in self.directory.views()}
        for part in list(self._parts.values()):
            placed: list[Outgoing] = []
            decided: list[tuple[_Pending, TaskAssigned]] = []
            waiting: list[_Pending] = []
            for pending in part.pending:
                allocation_id = None
                if self.resource_gate:
                    gated = self._gate(part, pending)
                    if gated is False:
                        continue  # denied or ended: failed in this round's output, never placed
                    if gated is None:
                        waiting.append(pending)
                        continue
                    allocation_id = gated
                assigned = self._place(pending, views, now)
                if assigned is None:
                    waiting.append(pending)
                    continue
                if allocation_id is not None:
                    assigned = assigned.model_copy(update={"allocation_id": allocation_id})
                out = self._assignment_records(pending, assigned)
                placed.extend(out)
                if len(out) == 2:  # else dead-lettered: too large to assign
                    decided.append((pending, assigned))
            self._before_flush(part, waiting, now)
            records = [*part.outbox, *placed]
            watermark = part.watermark(waiting)
            if not records and (watermark is None or watermark == part.committed):
                continue
            if not await self._flush(part, records, watermark):
                await self._rewind(part)
                continue
            part.outbox.clear()
            part.pending = waiting
            part.keys = {p.key for p in waiting}
            part.committed = watermark
            for pending in waiting:
                pending.noted = pending.noting or pending.noted
            for pending, assigned in decided:
                self.directory.record(assigned)
                self._announce(pending, assigned)
            self._after_flush(part, records)

    def _gate(self, part: _Partition, pending: _Pending) -> str | bool | None:
        """The resource gate for one attempt: its allocation id if it may be placed, None to
        keep it waiting, False if it never will be (its TaskFailed joins ``part.outbox``)."""
        answer = self.gate.answer(pending.ready)
        record = answer.record
        if answer.verdict == "allocated":
            return answer.allocation_id
        notice = None
        if answer.verdict == "queued":
            assert isinstance(record, ResourceQueued)
            notice = queued_notice(pending.ready, record, self.me)
        elif record is None and time.monotonic() - pending.since >= UNANSWERED_SECONDS:
            notice = unanswered_notice(pending.ready, self.me)
        if notice is not None and notice.reason not in (pending.noted, pending.noting):
            pending.noting = notice.reason
            part.outbox.append(self._for_workflow(notice))
        if answer.verdict == "queued":
            return None
        if answer.verdict == "ended":
            assert isinstance(record, ResourceDenied | ResourceReleased)
            failed = ended_notice(pending.ready, record, self.me)
            part.outbox.append(self._for_workflow(failed))
            log.warning(
                "task not dispatched: its resources were not granted",
                workflow_id=failed.workflow_id,
                task_id=failed.task_id,
                attempt=failed.attempt,
                error_kind=failed.error_kind,
                reason=failed.message,
            )
            return False
        return None

    def _for_workflow(self, event: TaskWaiting | TaskFailed) -> Outgoing:
        """A notice for the Workflow Manager on ``tasks.results`` (keyed by workflow id)."""
        return (self.settings.topic("tasks.results"), self.mapper.encode(event))

    def _before_flush(self, part: _Partition, waiting: Sequence[_Pending], now: datetime) -> None:
        """Hook: add records to ``part.outbox`` that must go out in this round's transaction."""

    def _after_flush(self, part: _Partition, records: Sequence[Outgoing]) -> None:
        """Hook: ``records`` (with the partition's offset) are now committed."""

    def _place(
        self, pending: _Pending, views: dict[str, AgentView], now: datetime
    ) -> TaskAssigned | None:
        """The assignment for the least loaded capable agent, or None to keep waiting."""
        ready = pending.ready
        view = choose_agent(
            ready.capabilities, views.values(), now, intervals=self.liveness_intervals
        )
        if view is None:
            if not pending.announced:
                pending.announced = True
                log.warning(
                    "no live agent can run the task; it waits",
                    workflow_id=ready.workflow_id,
                    correlation_id=ready.correlation_id,
                    task_id=ready.task_id,
                    attempt=ready.attempt,
                    capabilities=[req.name for req in ready.capabilities],
                )
            return None
        views[view.agent_id] = dataclasses.replace(view, outstanding=view.outstanding + 1)
        return TaskAssigned(
            **meta(self.me, causation=ready),
            workflow_id=ready.workflow_id,
            task_id=ready.task_id,
            attempt=ready.attempt,
            agent_id=view.agent_id,
            task=ready.task,
            deadline=ready.deadline,
        )

    def _assignment_records(self, pending: _Pending, assigned: TaskAssigned) -> list[Outgoing]:
        """The assignment for the agent, and the same event for the Workflow Manager."""
        try:
            encoded = self.mapper.encode(assigned)
        except EventError as exc:  # the task spec plus envelope no longer fits the size limit
            letter = dead_letter(
                pending.record,
                exc,
                COMPONENT,
                producer=self.me,
                max_event_bytes=self.settings.max_event_bytes,
            )
            return [(self.settings.topic("dlq"), letter)]
        for_results = Encoded(assigned.workflow_id.encode(), encoded.value, encoded.headers)
        return [
            (self.settings.topic("tasks.assigned"), encoded),
            (self.settings.topic("tasks.results"), for_results),
        ]

    def _announce(self, pending: _Pending, assigned: TaskAssigned) -> None:
        with structlog.contextvars.bound_contextvars(
            workflow_id=assigned.workflow_id, correlation_id=assigned.correlation_id
        ):
            waited = time.monotonic() - pending.since
            if pending.announced:
                log.info(
                    "waiting task dispatched",
                    task_id=assigned.task_id,
                    attempt=assigned.attempt,
                    agent_id=assigned.agent_id,
                    waited_seconds=round(waited, 3),
                )
            else:
                log.info(
                    "task dispatched",
                    task_id=assigned.task_id,
                    attempt=assigned.attempt,
                    agent_id=assigned.agent_id,
                )

    async def _flush(
        self, part: _Partition, records: Sequence[Outgoing], watermark: int | None
    ) -> bool:
        """Produce ``records`` and commit ``watermark`` together; False if nothing happened."""
        move = watermark is not None and watermark != part.committed
        if self.transactional:
            return await self._flush_transaction(part, records, watermark if move else None)
        producer = self._plain_producer
        try:
            with kafka_errors(self.settings, "dispatch"):
                sent = [
                    await producer.send(topic, r.value, key=r.key, headers=r.headers)
                    for topic, r in records
                ]
                await asyncio.gather(*sent)
                if move:
                    assert watermark is not None
                    await self._ready_consumer.commit({part.tp: watermark})
        except BrokerError as exc:
            log.warning(
                "dispatch not confirmed; re-reading", partition=part.tp.partition, error=str(exc)
            )
            return False
        return True

    async def _flush_transaction(
        self, part: _Partition, records: Sequence[Outgoing], watermark: int | None
    ) -> bool:
        producer = part.producer
        assert producer is not None
        try:
            await producer.begin_transaction()
            for topic, r in records:
                await producer.send(topic, r.value, key=r.key, headers=r.headers)
            if watermark is not None:
                await producer.send_offsets_to_transaction({part.tp: watermark}, self.group_id)
            await producer.commit_transaction()
        except _FATAL as exc:
            raise BrokerError(
                f"dispatcher fenced on {part.tp.topic}[{part.tp.partition}]: another replica "
                f"owns it now ({type(exc).__name__}); restart this one"
            ) from exc
        except KafkaError as exc:
            log.warning(
                "transaction aborted; re-reading", partition=part.tp.partition, error=str(exc)
            )
            with contextlib.suppress(KafkaError):
                await producer.abort_transaction()
            return False
        return True

    async def _rewind(self, part: _Partition) -> None:
        """Forget what was read past the committed offset; it is read (and placed) again."""
        part.pending.clear()
        part.keys.clear()
        part.outbox.clear()
        part.next_offset = part.committed
        if part.committed is not None:
            self._ready_consumer.seek(part.tp, part.committed)
        else:
            with kafka_errors(self.settings, "rewind tasks.ready"):
                await self._ready_consumer.seek_to_beginning(part.tp)

    # -- partition ownership -----------------------------------------------------------------

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            async with self._lock:
                for tp in sorted(assigned):
                    if tp not in self._parts:
                        self._parts[tp] = await self._open_partition(tp)
                await self._catch_up()
            log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))
        except Exception as exc:  # aiokafka only logs listener errors; make the loop raise it
            self._failure = exc

    async def _open_partition(self, tp: TopicPartition) -> _Partition:
        producer = None
        if self.transactional:
            producer = AIOKafkaProducer(
                **client_kwargs(self.settings),
                transactional_id=f"{self.group_id}-{tp.topic}-{tp.partition}",
                acks="all",
            )
        try:
            if producer is not None:
                with kafka_errors(self.settings, "open the dispatcher's transactional producer"):
                    await producer.start()  # init_transactions: fences the partition's last owner
            with kafka_errors(self.settings, "read the dispatcher's committed offset"):
                committed = await self._ready_consumer.committed(tp)
        except BaseException:
            await stop_clients(producer)  # started or not, it holds sockets until stopped
            raise
        return _Partition(tp, committed=committed, next_offset=committed, producer=producer)

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                part = self._parts.pop(tp, None)
                if part is None:
                    continue
                if part.pending:
                    log.info(
                        "waiting tasks left to the partition's next owner",
                        partition=tp.partition,
                        tasks=len(part.pending),
                    )
                await stop_clients(part.producer)

    # -- clients -----------------------------------------------------------------------------

    @property
    def _view_consumer(self) -> AIOKafkaConsumer:
        assert self._view is not None, "the dispatcher is not running"
        return self._view

    @property
    def _ready_consumer(self) -> AIOKafkaConsumer:
        assert self._ready is not None, "the dispatcher is not running"
        return self._ready

    @property
    def _plain_producer(self) -> AIOKafkaProducer:
        assert self._plain is not None, "the dispatcher is not running"
        return self._plain


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.dispatcher._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.dispatcher._assigned(assigned)


__all__ = ["Dispatcher"]
