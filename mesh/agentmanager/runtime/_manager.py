"""The Agent Manager: ``tasks.ready`` in, one healthy, capable, unbroken agent per attempt out.

It is the one component that assigns (one consumer group on ``tasks.ready``). Every replica
folds the same view from Kafka (:class:`~mesh.agentmanager.runtime._view.View`: the registry,
heartbeats, results, breakers and, with the resource gate, allocations) and runs the assignment
(:mod:`~mesh.agentmanager.runtime._assign`) as an app on the one transactional per-partition
loop (:class:`mesh.kafka.loop.PartitionLoop`), which owns the consumer group, one transactional
producer per ``tasks.ready`` partition (``<group>-<p>``, fencing a zombie on adoption), the
commits and the aborts — exactly the loop the Workflow Manager runs on. Before a newly owned
partition is read, the view catches up with the end of its topics, so assignments committed by
the previous owner are known and their ``TaskReady`` records are skipped, not assigned twice.

A registry guard (a consumer group on ``agents``) sends refused registrations to the DLQ:
exactly one replica handles each record, and every replica agrees on the verdict (see
:class:`~mesh.agentmanager.Registry`). A second guard group does the same for the other topics
the Agent Manager owns the dead letters of (``GUARDED``), which the agents and every replica's
view read without a group and so only skip. The API (``get_agent_health``, ``match_capabilities``)
is answered from the view on ``calls``; the lifecycle of local agent processes
(:class:`AgentLifecycle`) runs beside it in ``mesh run agents``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from mesh._aio import cancel_and_wait
from mesh.agentmanager._health import HealthPolicy
from mesh.agentmanager._matching import Requirements, Strategy, match_capabilities
from mesh.agentmanager._registry import Registry
from mesh.agentmanager.runtime._assign import COMPONENT, Assigner, Owned
from mesh.agentmanager.runtime._lifecycle import AgentLifecycle
from mesh.agentmanager.runtime._templates import load_templates
from mesh.agentmanager.runtime._view import View
from mesh.agents import assignment_problem
from mesh.errors import InvalidEvent, MeshError, RegistrationRefused
from mesh.events import CHANNELS, CapabilityRequirement, Event, Mapper, Producer, Resources
from mesh.kafka.calls import CallServer, Handler
from mesh.kafka.clients import stop_clients
from mesh.kafka.dlq import channel_of
from mesh.kafka.faststream import EventRouter, faststream_broker, start_broker
from mesh.kafka.faults import mark_serving
from mesh.kafka.loop import Decided, PartitionLoop
from mesh.kafka.records import ConsumedRecord
from mesh.log import get_logger
from mesh.observe import metrics
from mesh.settings import Settings
from mesh.supervisor import RestartPolicy

GUARDED = ("tasks.assigned", "agents.heartbeats", "breakers")
"""Topics whose bad records the Agent Manager's guard group dead-letters (``DLQ_OWNERS``)."""

_GUARD_POLL_MS = 500
_POLL_SECONDS = 0.2  # how soon a change of the view (a new agent) reaches waiting attempts
_ANSWER_POLL_SECONDS = 0.01
"""The same while an attempt waits for the allocator's answer, which comes within milliseconds
on the view's reader, not on the ``tasks.ready`` fetch the loop waits on: at 200 ms it was
most of the resource gate's hop."""

log = get_logger("mesh.agentmanager")


class AgentManager:
    """Assigns ready tasks to agents: ``await AgentManager(settings).run(stop)``.

    ``transactional`` None means "use transactions if the broker has them" (asked once at
    start); True insists, False never tries.
    """

    name = "Agent Manager"
    inputs: tuple[str, ...] = ("tasks.ready",)
    co_partitioned: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("tasks.assigned", "tasks.results", "dlq")

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str | None = None,
        transactional: bool | None = None,
        instance: str | None = None,
        strategy: Strategy = "least_loaded",
        policy: HealthPolicy | None = None,
        seed: int | None = None,
        guard: bool = True,
        resource_gate: bool | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id or settings.group("agent-manager")
        self.policy = policy or HealthPolicy()
        self.resource_gate = settings.resource_gate if resource_gate is None else resource_gate
        """Place an attempt only once the Resource Allocator granted it (None: from settings)."""
        host = "".join(socket.gethostname().split()) or "host"
        self.me = Producer(component=COMPONENT, instance=instance or f"{host}-{os.getpid()}")
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.registry = Registry(self.policy)
        self.view = View(settings, self.mapper, self.registry, gate=self.resource_gate)
        metrics.sample(
            "mesh_agent_heartbeats_missed",
            "Heartbeat intervals since an agent was last heard from, less one (0: on time).",
            "agent",
            self._missed_heartbeats,
        )
        self.assigner = Assigner(
            settings,
            self.view,
            mapper=self.mapper,
            me=self.me,
            strategy=strategy,
            rng=random.Random(seed),  # noqa: S311 - load balancing, not cryptography
        )
        self.guard = guard
        self._router: EventRouter | None = None
        self.loop = PartitionLoop(
            settings, self, group_id=self.group_id, transactional=transactional
        )

    @property
    def transactional(self) -> bool | None:
        """Whether this run uses transactions; known once ``run`` has started."""
        return self.loop.transactional

    @property
    def decisions(self) -> int:
        """Placement decisions made (assigned or not), for benchmarks and metrics."""
        return self.assigner.decisions

    # -- lifecycle ---------------------------------------------------------------------------

    def router(self) -> EventRouter:
        """The component's one FastStream router: its API on ``calls`` and the registry guard
        on ``agents`` (and, in ``mesh run agents``, the lifecycle's ``agents.commands``)."""
        router = EventRouter(self.settings, component=COMPONENT, me=self.me, publishes=("replies",))
        CallServer(
            self.settings,
            "agent-manager",
            self.api_handlers(),
            me=self.me,
            group_id=f"{self.group_id}-calls",
        ).subscribe(router)
        if self.guard:
            router.events(
                "agents",
                group_id=self.settings.group("agent-manager-registry"),
                isolation_level="read_committed",
                unreadable=self._unreadable_registration,
                title="agents (registry guard)",
                description="Registrations the Agent Manager refuses go to the DLQ, once",
            )(self._registration)
            router.events(
                *GUARDED,
                group_id=self.settings.group("agent-manager-guard"),
                isolation_level="read_committed",
                title="+".join(GUARDED) + " (dead-letter guard)",
                description="Bad records on these topics go to the DLQ, once",
            )(self._guarded)
        self._router = router
        return router

    def _missed_heartbeats(self) -> dict[str, float]:
        """Per registered agent, the heartbeats it has missed (for metrics)."""
        agents = self.registry.agents(datetime.now(UTC))
        return {a.agent_id: a.missed_heartbeats for a in agents if a.agent_id is not None}

    async def run(
        self, stop: asyncio.Event, *, also: Callable[[EventRouter], None] | None = None
    ) -> None:
        """Manage assignments until ``stop`` is set; ``also`` subscribes more handlers to the
        component's router before its broker starts."""
        follower = self.view.start()
        broker = faststream_broker(self.settings)
        router = self.router()
        if also is not None:
            also(router)
        broker.include_router(router)
        try:
            await self.view.catch_up()
            await start_broker(broker, self.settings)
            loop = asyncio.create_task(self.loop.run(stop))
            # Ready once the loop holds its partitions: before that nothing is assigned (joining
            # the group takes seconds on a fresh broker), and tasks sent meanwhile would wait.
            ready = asyncio.create_task(self.loop.ready.wait())
            try:
                await asyncio.wait({loop, follower, ready}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
            if ready.done() and not ready.cancelled():
                mark_serving()
                log.info(
                    "agent manager ready",
                    group_id=self.group_id,
                    agents=len(self.registry.agent_ids),
                    resource_gate=self.resource_gate,
                )
            done, _ = await asyncio.wait({loop, follower}, return_when=asyncio.FIRST_COMPLETED)
            if follower in done:
                follower.result()  # the view died: raise its error
            await loop
        finally:
            try:
                await cancel_and_wait(follower)
            finally:  # even when cancelled meanwhile
                await stop_clients(broker)
        log.info("agent manager stopped")

    # -- the API over Kafka (ApiCall on calls → Reply) ---------------------------------------

    def api_handlers(self) -> dict[str, Handler]:
        """``get_agent_health`` and ``match_capabilities``, answered from this replica's
        registry (every replica folds the whole registry, heartbeats and breakers)."""

        async def get_agent_health(args: dict[str, Any]) -> Any:
            agents = self.registry.agents(datetime.now(UTC))
            wanted = args.get("agent_id")
            if wanted is not None:
                agents = [a for a in agents if a.agent_id == wanted]
                if not agents:
                    raise MeshError(f"no agent {wanted!r} is registered")
            return agents

        async def matching(args: dict[str, Any]) -> Any:
            def needs(name: str) -> tuple[CapabilityRequirement, ...]:
                items = args.get(name) or []
                if not isinstance(items, list):
                    raise ValueError(f"'{name}' must be a list of capabilities")
                return tuple(
                    CapabilityRequirement.model_validate_json(json.dumps(i)) for i in items
                )

            wanted = Requirements(
                required=needs("required"),
                preferred=needs("preferred"),
                resources=Resources.model_validate_json(json.dumps(args.get("resources") or {})),
            )
            found = match_capabilities(wanted, self.registry.agents(datetime.now(UTC)))
            return [
                {
                    "agent_id": c.agent.agent_id,
                    "kind": c.agent.kind,
                    "preferred_met": c.preferred,
                    "load": c.agent.load,
                    "outstanding": c.agent.outstanding,
                    "max_concurrency": c.agent.max_concurrency,
                    "health": c.agent.health,
                }
                for c in found
            ]

        return {"get_agent_health": get_agent_health, "match_capabilities": matching}

    # -- the app the loop runs ---------------------------------------------------------------

    def producer_options(self, *, transactional: bool) -> dict[str, Any]:
        return {}

    async def adopt(
        self,
        numbers: Sequence[int],
        partitions: int,
        committed: Mapping[TopicPartition, int | None],
    ) -> None:
        """Catch the view up, so what the previous owner assigned is known, then own them."""
        await self.view.catch_up()
        topic = self.settings.topic("tasks.ready")
        for number in numbers:
            tp = TopicPartition(topic, number)
            position = committed.get(tp)
            self.assigner.owned[number] = Owned(tp, position, position)

    def drop(self, numbers: Sequence[int]) -> None:
        for number in numbers:
            owned = self.assigner.owned.pop(number, None)
            if owned is None:
                continue
            left = self.assigner.forget(owned)
            if left:
                log.info(
                    "waiting tasks left to the partition's next owner", partition=number, tasks=left
                )

    def decide(
        self, number: int, records: Sequence[ConsumedRecord], now: datetime
    ) -> Decided | None:
        self.view.check()
        owned = self.assigner.owned.get(number)
        if owned is None:
            return None
        work = self.assigner.decide(owned, records, self.loop.partitions, now)
        if work is None:
            return None
        move = work.watermark is not None and work.watermark != owned.committed
        return Decided(
            work, {owned.tp: work.watermark} if move and work.watermark is not None else {}
        )

    async def recover(self, number: int) -> Mapping[TopicPartition, int] | None:
        """Part of the round may be written: forget what waits and read it again from the
        committed offset (what was assigned meanwhile is skipped once the view has it)."""
        owned = self.assigner.owned.get(number)
        if owned is None:
            return None
        self.assigner.forget(owned)
        await self.view.catch_up()
        return {owned.tp: owned.committed} if owned.committed is not None else None

    def wait_seconds(self, now: datetime) -> float | None:
        if any(owned.awaiting for owned in self.assigner.owned.values()):
            return _ANSWER_POLL_SECONDS
        return _POLL_SECONDS

    # -- the registry guard: refused registrations to the DLQ, once ---------------------------

    async def _registration(self, _event: Event, record: ConsumedRecord) -> None:
        await self._judge(record)

    async def _unreadable_registration(self, record: ConsumedRecord, _error: Exception) -> None:
        """A tombstone (a terminated agent) or an unreadable record: the view judged it too."""
        await self._judge(record)

    async def _guarded(self, event: Event, record: ConsumedRecord) -> None:
        """A readable record on a guarded topic: dead-letter it if it does not belong there
        (the router dead-letters what cannot be read at all)."""
        channel = channel_of(self.settings, record.topic)
        if channel == "tasks.assigned":
            problem = assignment_problem(record.key, event)
        elif event.type in CHANNELS[channel].types:
            problem = None
        else:
            problem = f"{event.type} does not belong on {channel}"
        if problem is not None:
            assert self._router is not None
            await self._router.dead_letter(record, InvalidEvent(problem))

    async def _judge(self, record: ConsumedRecord) -> None:
        """Once the view has folded ``record``, dead-letter it if it was refused: the group
        gives each record to one replica, and every replica reaches the same verdict."""
        await self.view.folded_up_to(record.partition, record.offset)
        refusal = self.registry.refused.pop((record.partition, record.offset), None)
        if refusal is not None:
            assert self._router is not None
            await self._router.dead_letter(record, RegistrationRefused(refusal.reason))


async def run_agent_manager(
    settings: Settings,
    stop: asyncio.Event,
    *,
    strategy: Strategy = "least_loaded",
    missed_heartbeats: float | None = None,
    transactional: bool | None = None,
    instance: str | None = None,
    templates: Sequence[Path] = (),
    lifecycle: bool = True,
    restart: RestartPolicy | None = None,
) -> None:
    """Run one Agent Manager replica until ``stop`` is set (``mesh run agents``): assignment,
    and (unless ``lifecycle`` is False) the local agents that ``mesh agents spawn`` starts."""
    policy = HealthPolicy.after(missed_heartbeats) if missed_heartbeats else HealthPolicy()
    manager = AgentManager(
        settings,
        strategy=strategy,
        policy=policy,
        transactional=transactional,
        instance=instance,
    )
    if not lifecycle:
        await manager.run(stop)
        return
    agents = AgentLifecycle(
        settings,
        load_templates(templates),
        manager.registry,
        me=manager.me,
        restart=restart,
        folded=lambda: manager.view.folded,
    )
    jobs = [
        asyncio.ensure_future(manager.run(stop, also=agents.subscribe)),
        asyncio.ensure_future(agents.serve(stop)),
    ]
    try:
        done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_EXCEPTION)
        for job in done:
            job.result()  # the first failure stops the replica
    finally:
        stop.set()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(job, 60)


__all__ = ["COMPONENT", "AgentManager", "run_agent_manager"]
