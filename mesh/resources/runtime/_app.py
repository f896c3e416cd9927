"""The Resource Allocator component: ``run_resources(settings, stop)`` (``mesh run resources``).

Inputs and outputs:

- ``resources`` (whole, no group): the ledger. ``ResourceRequested`` records on it are the
  requests; the decisions the allocator publishes there come back and are folded idempotently.
  ``QuotaSet`` (``set_quotas`` over Kafka), ``PoolDeclared`` and ``ResourceForecast`` are
  applied as they arrive.
- ``agents`` and ``agents.heartbeats`` (whole, no group): hosts agents report become nodes;
  allocations on an agent that terminates or stops heartbeating are released.
- ``tasks.results`` and ``workflow.events`` (consumer group): completions, failures, timeouts,
  reassignments, cancellations and finished workflows release their allocations. With
  ``consume_ready`` also ``tasks.ready``: each ``TaskReady`` becomes a ``ResourceRequested``.
  These inputs are one FastStream batch subscriber (``mesh.kafka.faststream``), beside the
  API's ``calls`` subscriber on the component's one router; the ledger and agent topics are
  read whole without a group, so they stay a plain aiokafka reader.
- Records of ``resources`` and of the input group that are not valid events go to ``dlq``
  (``mesh.kafka.dlq.dead_letter``); the ledger remembers how far it dead-lettered (offsets
  committed under ``<group>-ledger``), so a restart does not dead-letter the same record again.

On start the ledger is rebuilt by reading ``resources`` to its end (the embedded broker does not
compact: the whole log is read and the idempotent fold keeps the last word per key), then the
pools of the pools file are published where the ledger differs. Decisions are made by one
replica at a time: the one the input group gives partition 0 of ``tasks.results`` (Kafka's group
protocol is the lease; no home-made coordinator). Others fold the same ledger and release what
their input partitions end, ready to take over. Processing is at-least-once and idempotent:
decisions are keyed by allocation id and a decided request is never decided again; input
offsets are committed after the requests, decisions and releases they caused are acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from mesh.errors import EventError, MeshError
from mesh.events import (
    AgentTerminated,
    Event,
    Mapper,
    PoolDeclared,
    Producer,
    QuotaSet,
    ResourceDenied,
    ResourceReleased,
    ResourceRequested,
    Resources,
    TaskReady,
    meta,
)
from mesh.kafka import ConsumedRecord
from mesh.kafka.calls import CallServer, Handler
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.dlq import channel_of, owns, skipped
from mesh.kafka.faststream import EventRouter, faststream_broker, start_broker
from mesh.kafka.faults import mark_serving
from mesh.log import bind_event_context, get_logger
from mesh.observe import metrics
from mesh.resources._api import COMPONENT, Allocator, ResourceRequest, default_producer
from mesh.resources._placement import NodeTable
from mesh.resources._pools import PoolsConfig, load_pools, pools_path
from mesh.resources._requests import request_for_ready
from mesh.resources.runtime._outbox import Outbox
from mesh.resources.runtime._reader import LEDGER_TOPICS, TopicReader, fold_record, partitions_of
from mesh.settings import Settings

log = get_logger("mesh.resources")

_MAX_WAIT_SECONDS = 0.5
"""Longest the loop waits for ledger records before it looks at its timers and ``stop``
(a wait ends as soon as records come: nothing on the decision path waits it out)."""
_INPUT_BATCH = 500
_ROUND_SHARE = 0.25
"""Rounds take at most about this share of the allocator's time: a round costs in proportion to
what waits, and one after every input batch over a long queue that lets nothing in starved the
component (and the queue grew). A cheap round is due again within milliseconds."""
_MAX_ROUND_GAP = 0.5
_COMMIT_LEDGER_EVERY = 5.0
_SWEEP_EVERY = 60.0


def finished_to_forget(records: Mapping[str, Event], cutoff: datetime, keep: int) -> list[str]:
    """The finished (released or denied) allocations to tombstone: those that ended before
    ``cutoff``, and the oldest of the rest beyond the ``keep`` newest."""
    finished = [
        (r.occurred_at, i)
        for i, r in records.items()
        if isinstance(r, ResourceReleased | ResourceDenied)
    ]
    old = [i for at, i in finished if at < cutoff]
    recent = [(at, i) for at, i in finished if at >= cutoff]
    excess = len(recent) - keep
    if excess > 0:
        old += [i for _, i in heapq.nsmallest(excess, recent)]
    return old


_ENVELOPE = {"event_id", "occurred_at", "correlation_id", "causation_id", "producer", "type"}


_REQUEST_FIELDS = frozenset(
    {
        "tenant",
        "priority",
        "workflow_id",
        "task_id",
        "attempt",
        "estimated_duration_seconds",
        "pool_id",
        "allocation_id",
    }
)
"""What an API caller may set in ``allocate_resources`` besides ``resources``."""

_API_DECISION_SECONDS = 10.0
"""How long ``allocate_resources`` waits for the loop's decision before answering 'requested'."""


class ResourceService:
    """The allocator as a Kafka component: ``await ResourceService(settings).run(stop)``.

    ``pools`` (or else ``pools_file``, ``MESH_RESOURCE_POOLS``, ``./resources/pools.yaml``) gives
    the declared pools and defaults. ``ready`` is set once the ledger is rebuilt and the pools are
    declared; ``allocator`` is the live in-process state (tests read it).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pools_file: Path | None = None,
        pools: PoolsConfig | None = None,
        group_id: str = "mesh-resources",
        instance: str | None = None,
        consume_ready: bool | None = None,
        tick_seconds: float = 1.0,
        retain_seconds: float = 86_400.0,
        keep_finished: int = 10_000,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.consume_ready = settings.resource_gate if consume_ready is None else consume_ready
        """Turn every TaskReady into a request (None: when the resource gate is on)."""
        self.tick_seconds = tick_seconds
        self.retain = timedelta(seconds=retain_seconds)
        self.keep_finished = keep_finished
        """Finished allocations kept at most (a repeated request for one must not be granted
        again; repeats come within seconds, not after thousands of later allocations)."""
        self.pools: PoolsConfig = pools or load_pools(
            pools_path(pools_file or settings.resource_pools)
        )
        me = default_producer()
        self.me = Producer(component=COMPONENT, instance=instance or me.instance)
        self.allocator = Allocator(config=self.pools.config, producer=self.me)
        metrics.sample(
            "mesh_pool_allocations",
            "Allocations held in each resource pool.",
            "pool",
            self._held_by_pool,
        )
        metrics.sample(
            "mesh_pool_queued_requests",
            "Requests queued for resources, by the pool they ask for ('any': no pool named).",
            "pool",
            self._queued_by_pool,
        )
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.ready = asyncio.Event()
        self.leader = False
        """Whether this replica decides (it holds the lease: ``tasks.results`` partition 0)."""
        self.assigned = False
        """Whether the input group has given this replica any partitions yet."""
        self.outbox = Outbox(settings, self.mapper, self.me)
        self._new_requests = False
        self._agents_moved = False
        self._seen_version = -1
        self._next_round = 0.0
        """When a round may run again (``time.monotonic``), after the last one's cost."""
        self._round_owed = False
        """A round was put off by that pace: the loop runs it when it is due."""
        self._table: NodeTable | None = None
        self._reader: TopicReader | None = None
        self._producer: AIOKafkaProducer | None = None
        self._flushing = asyncio.Lock()
        self._rounds = asyncio.Event()
        """Set (and replaced) after every round that decided something: what API calls wait on."""

    # -- lifecycle ---------------------------------------------------------------------------

    def _held_by_pool(self) -> dict[str, float]:
        counts = dict.fromkeys(self.allocator.ledger.pools, 0.0)
        for held in list(self.allocator.ledger.held.values()):
            counts[held.event.pool_id] = counts.get(held.event.pool_id, 0.0) + 1
        return counts

    def _queued_by_pool(self) -> dict[str, float]:
        counts = dict.fromkeys(self.allocator.ledger.pools, 0.0)
        for waiting in list(self.allocator.ledger.waiting.values()):
            pool = waiting.request.pool_id or "any"
            counts[pool] = counts.get(pool, 0.0) + 1
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        """Allocate until ``stop`` is set (and answer the API's calls beside it)."""
        broker = faststream_broker(self.settings)
        broker.include_router(self.router())
        async with self._clients() as reader:
            count = await reader.catch_up(self._fold)
            self._declare()
            log.info(
                "resource ledger rebuilt",
                records=count,
                pools=len(self.allocator.ledger.pools),
                allocations=len(self.allocator.ledger.held),
                waiting=len(self.allocator.ledger.waiting),
            )
            await self._flush()
            try:  # inputs and calls only once the ledger is rebuilt
                await start_broker(broker, self.settings)
                self.ready.set()
                mark_serving()
                log.info(
                    "resources ready", group_id=self.group_id, consume_ready=self.consume_ready
                )
                await self._loop(stop, reader)
            finally:
                await stop_clients(broker)
        log.info("resource allocator stopped")

    def router(self) -> EventRouter:
        """The component's one router: the input group (a batch at a time) and the API."""
        router = EventRouter(
            self.settings,
            component=COMPONENT,
            me=self.me,
            publishes=("replies",),
            mapper=self.mapper,
        )
        router.events(
            *self._input_names(),
            group_id=self.group_id,
            batch=_INPUT_BATCH,
            after=self._after_inputs,
            listener=_Leadership(self),
            description="Endings release allocations; each TaskReady (with consume_ready) asks",
        )(self.on_input)
        calls = CallServer(
            self.settings,
            "resource-allocator",
            self.api_handlers(),
            me=self.me,
            group_id=f"{self.group_id}-calls",
        )
        calls.subscribe(router)
        return router

    # -- the API over Kafka (ApiCall on calls → Reply) ---------------------------------------

    def api_handlers(self) -> dict[str, Handler]:
        """``allocate_resources``, ``release_resources``, ``get_resource_usage``, ``set_quotas``.

        Changes go through the same ledger and outbox as the task path, so they are decided by
        the deciding replica and published before they count; a standing-by replica refuses
        them (retriable) rather than deciding twice.
        """
        allocator = self.allocator

        def leading() -> None:
            if not self.leader:
                raise MeshError("this allocator replica stands by; retry", retriable=True)

        async def allocate_resources(args: dict[str, Any]) -> Any:
            leading()
            raw = args.get("request")
            if not isinstance(raw, dict) or "resources" not in raw:
                raise ValueError("'request' must be an object with 'resources'")
            wanted = {k: v for k, v in raw.items() if k in _REQUEST_FIELDS and v is not None}
            wanted["resources"] = Resources.model_validate_json(json.dumps(raw["resources"]))
            request = allocator._requested(ResourceRequest(**wanted))
            if request.allocation_id not in allocator.ledger.records:
                allocator.apply(request)
                self._new_requests = True
                self.outbox.event(request)
                self._round(tick=False)  # decided now, not in the loop's next pass
                await self._flush()
            deadline = time.monotonic() + _API_DECISION_SECONDS
            while not allocator.ledger.decided(request.allocation_id):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):  # a queued request: wait for a round
                    await asyncio.wait_for(self._rounds.wait(), left)
            return allocator.ledger.records.get(request.allocation_id)

        async def release_resources(args: dict[str, Any]) -> Any:
            leading()
            allocation_id = args.get("allocation_id")
            if not isinstance(allocation_id, str) or not allocation_id:
                raise ValueError("'allocation_id' is required")
            for event in allocator.release_resources(allocation_id, reason="released by the API"):
                self.outbox.event(event)
            return {"allocation_id": allocation_id, "released": True}

        async def get_resource_usage(args: dict[str, Any]) -> Any:
            return allocator.get_resource_usage().to_dict()

        async def set_quotas(args: dict[str, Any]) -> Any:
            leading()
            quotas = args.get("quotas")
            if not isinstance(quotas, dict):
                raise ValueError("'quotas' must map tenants to their limits")
            events: list[QuotaSet] = []
            for tenant, spec in quotas.items():
                if not isinstance(spec, dict):
                    raise ValueError(f"quota of {tenant!r} must be an object")
                limits = {k: v for k, v in spec.items() if k in Resources.model_fields}
                events.append(
                    QuotaSet(
                        **meta(self.me, correlation_id=f"quota-{tenant}"),
                        tenant=tenant,
                        limits=Resources.model_validate_json(json.dumps(limits)),
                        max_allocations=spec.get("max_allocations"),
                        max_cost_per_hour=spec.get("max_cost_per_hour"),
                    )
                )
            for event in allocator.set_quotas(events):
                self.outbox.event(event)
            return {"tenants": sorted(quotas)}

        return {
            "allocate_resources": allocate_resources,
            "release_resources": release_resources,
            "get_resource_usage": get_resource_usage,
            "set_quotas": set_quotas,
        }

    def _input_names(self) -> list[str]:
        ready = ["tasks.ready"] if self.consume_ready else []
        return ["tasks.results", "workflow.events", *ready]

    @contextlib.asynccontextmanager
    async def _clients(self) -> AsyncIterator[TopicReader]:
        """The ledger reader and the producer of the outbox (which writes tombstones: see
        ``mesh.kafka.faststream`` on why not through FastStream)."""
        reader = TopicReader(self.settings, LEDGER_TOPICS, commit_group=f"{self.group_id}-ledger")
        producer = AIOKafkaProducer(**client_kwargs(self.settings), acks="all")
        try:
            await reader.start()
            with kafka_errors(self.settings, "connect the resource allocator to Kafka"):
                await producer.start()
                for name in (*self._input_names(), "dlq"):
                    await partitions_of(reader.consumer, self.settings, name)
            self._reader, self._producer = reader, producer
            yield reader
        finally:
            try:
                await stop_clients(producer)
            finally:
                await reader.stop()

    # -- the loop ----------------------------------------------------------------------------

    async def _loop(self, stop: asyncio.Event, reader: TopicReader) -> None:
        last_tick = last_commit = last_sweep = 0.0
        while not stop.is_set():
            next_tick = last_tick + self.tick_seconds - time.monotonic()
            if self._round_owed:
                next_tick = min(next_tick, self._next_round - time.monotonic())
            wait = min(_MAX_WAIT_SECONDS, max(0.0, next_tick))
            for record in await reader.poll(timeout_ms=int(wait * 1000)):
                self._fold(record)
            now_mono = time.monotonic()
            tick = now_mono - last_tick >= self.tick_seconds
            if self.leader:
                self._round(tick=tick)
                if now_mono - last_sweep >= _SWEEP_EVERY:
                    self._sweep()
                    last_sweep = now_mono
            if tick:
                last_tick = now_mono
            await self._flush()
            if now_mono - last_commit >= _COMMIT_LEDGER_EVERY:
                with contextlib.suppress(Exception):
                    await reader.commit()
                last_commit = now_mono
        with contextlib.suppress(Exception):  # a clean stop remembers what was dead-lettered
            await reader.commit()

    def _fold(self, record: ConsumedRecord) -> None:
        if self.outbox.echo(record):
            return
        try:
            event = fold_record(self.allocator, self.settings, self.mapper, record)
        except EventError as exc:
            # The ledger is ours to dead-letter (once: not again after a restart); a bad record
            # on the agent topics is their owner's to dead-letter, so it is only skipped here.
            ours = owns(COMPONENT, channel_of(self.settings, record.topic))
            if ours and self._reader is not None and not self._reader.seen_before(record):
                self.outbox.dead_letter(record, exc)
            else:
                skipped(COMPONENT, record, exc)
            return
        if isinstance(event, ResourceRequested):
            self._new_requests = True
        elif isinstance(event, AgentTerminated):
            self._agents_moved = True

    async def on_input(self, event: Event, record: ConsumedRecord) -> None:
        """One input event: a ready task asks for its resources; an ending releases them."""
        bind_event_context(
            workflow_id=getattr(event, "workflow_id", None), correlation_id=event.correlation_id
        )
        if isinstance(event, TaskReady):
            self._ready(event)
            return
        for out in self.allocator.observe(event):
            self.outbox.event(out)
            log.info("resources released", allocation_id=getattr(out, "allocation_id", None))

    async def _after_inputs(self) -> None:
        """After a batch of inputs: decide what they asked for or let in (on the deciding
        replica: a release may let queued work in), and publish it all before their offsets are
        committed."""
        if self.leader:
            self._round(tick=False)
        await self._flush()

    def _ready(self, ready: TaskReady) -> None:
        """The task path: a ready attempt asks for its resources (once per attempt)."""
        request = request_for_ready(ready, self.me)
        if request.allocation_id in self.allocator.ledger.records:
            return  # a redelivered TaskReady: already asked
        self.allocator.apply(request)
        self._new_requests = True
        self.outbox.event(request)

    def _round(self, *, tick: bool) -> None:
        """Decide what waits, if anything changed; release what ran on lost agents."""
        allocator = self.allocator
        now = datetime.now(UTC)
        lost = allocator.reconcile(now) if tick or self._agents_moved else []
        self._agents_moved = False
        table = allocator.node_table(now)
        changed = (
            self._new_requests
            or lost
            or table is not self._table
            or allocator.ledger.version != self._seen_version
        )
        decisions: list[Event] = []
        started = time.monotonic()
        if allocator.ledger.waiting and changed and started < self._next_round:
            self._round_owed = True  # the loop comes back for it (see ``_ROUND_SHARE``)
        else:
            self._table = table
            if allocator.ledger.waiting and changed:
                decisions = list(allocator.decide(now))
                spent = time.monotonic() - started
                gap = min(_MAX_ROUND_GAP, spent * (1 - _ROUND_SHARE) / _ROUND_SHARE)
                self._next_round = started + spent + gap
            self._round_owed = False
            self._new_requests = False
            self._seen_version = allocator.ledger.version
        for event in (*lost, *decisions, *allocator.reassert()):
            self.outbox.event(event)
        if decisions:
            self._rounds.set()
            self._rounds = asyncio.Event()
            log.info(
                "resource round", decisions=len(decisions), waiting=len(allocator.ledger.waiting)
            )

    def _sweep(self) -> None:
        """Tombstone finished allocations older than the retention, and the oldest beyond
        ``keep_finished``, so the ledger (and memory) stays small however much has run."""
        cutoff = datetime.now(UTC) - self.retain
        ledger = self.allocator.ledger
        old = finished_to_forget(ledger.records, cutoff, self.keep_finished)
        for allocation_id in old:
            key = f"allocation:{allocation_id}"
            ledger.forget(key)
            self.outbox.tombstone(key)

    def _declare(self) -> None:
        """Publish the file's pools where the ledger differs, and its quotas where it has none."""
        ledger = self.allocator.ledger
        for pool in self.pools.pools(self.me):
            if not _same_pool(ledger.pools.get(pool.pool_id), pool):
                self.allocator.apply(pool)
                self.outbox.event(pool)
        for quota in self.pools.quotas(self.me):
            if quota.tenant not in ledger.quotas:
                self.allocator.apply(quota)
                self.outbox.event(quota)

    async def _flush(self) -> None:
        """Send the outbox; one flush at a time (the loop and the input subscriber both do),
        so records leave in the order they were made."""
        if self._producer is not None:
            async with self._flushing:
                await self.outbox.flush(self._producer)


def _same_pool(current: PoolDeclared | None, wanted: PoolDeclared) -> bool:
    if current is None:
        return False
    return current.model_dump(exclude=_ENVELOPE) == wanted.model_dump(exclude=_ENVELOPE)


class _Leadership(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Decides whether this replica makes decisions: it does while it owns ``tasks.results`` 0."""

    def __init__(self, service: ResourceService) -> None:
        self.service = service
        self.lease = TopicPartition(service.settings.topic("tasks.results"), 0)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.service.assigned = False
        if self.lease in revoked:
            self.service.leader = False
            log.info("resource allocator stands by")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.service.assigned = bool(assigned)
        if self.lease in assigned:
            self.service.leader = True
            self.service._table = None  # a new leader looks at everything once
            log.info("resource allocator decides")


async def run_resources(
    settings: Settings,
    stop: asyncio.Event,
    *,
    group_id: str = "mesh-resources",
    instance: str | None = None,
    consume_ready: bool | None = None,
) -> None:
    """Run the Resource Allocator until ``stop`` is set (``mesh run resources``).

    Pools come from ``settings.resource_pools`` (``MESH_RESOURCE_POOLS``), else
    ``./resources/pools.yaml``. ``consume_ready`` makes it also turn every ``TaskReady`` on
    ``tasks.ready`` into a request (the task path); None follows ``settings.resource_gate``, so
    that the allocator asks for exactly the attempts the gated Agent Manager waits for.
    """
    service = ResourceService(
        settings, group_id=group_id, instance=instance, consume_ready=consume_ready
    )
    await service.run(stop)
