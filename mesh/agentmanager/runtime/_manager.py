"""The Agent Manager: ``tasks.ready`` in, one healthy, capable, unbroken agent per attempt out.

It is the simple dispatcher (:class:`mesh.agents.Dispatcher`) with the Agent Manager's policy
plugged into its hooks, so the delivery machinery — the view rebuilt from Kafka, one
transactional producer per ``tasks.ready`` partition, waiting tasks kept uncommitted — is the
same code, tested once. On top of it, per round and inside the partition's transaction:

- placement by :func:`match_capabilities` and a selectable strategy, skipping agents that are
  unhealthy, offline, draining, or behind an open breaker (``breakers`` is folded too, so every
  replica routes around a breaker any agent or replica opened, and a restarted one starts with
  the current states);
- ``TaskWaiting`` on ``tasks.results`` (keyed by workflow id) when an attempt cannot be placed,
  or was placed elsewhere because its best agent's breaker is open — once per attempt and reason;
- ``TaskReassigned`` for every open attempt of an agent silent past the missed-heartbeat
  threshold. The replica that owns the workflow's ``tasks.ready`` partition sends it, in that
  partition's transaction, so exactly one replica does (a zombie is fenced). The Workflow Manager
  records it and schedules a new attempt; the old attempt's late results are then stale.

A registry guard (a consumer group on ``agents``) sends refused registrations to the DLQ:
exactly one replica handles each record, and every replica agrees on the verdict (see
:class:`Registry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mesh._aio import cancel_and_wait
from mesh.agentmanager._directory import AttemptKey
from mesh.agentmanager._health import HealthPolicy
from mesh.agentmanager._matching import (
    AgentState,
    Requirements,
    Strategy,
    choose,
    match_capabilities,
    why_not,
)
from mesh.agentmanager._registry import Registry
from mesh.agentmanager.runtime._dispatch import Dispatcher, Outgoing, _Partition, _Pending
from mesh.agentmanager.runtime._lifecycle import AgentLifecycle
from mesh.agentmanager.runtime._templates import load_templates
from mesh.errors import EventError, MeshError, RegistrationRefused
from mesh.events import (
    BreakerStateChanged,
    CapabilityRequirement,
    Encoded,
    Producer,
    Resources,
    TaskAssigned,
    TaskReassigned,
    TaskWaiting,
    WaitingReason,
    covers,
    meta,
)
from mesh.kafka.calls import CallServer, Handler
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.dlq import dead_letter
from mesh.kafka.partitions import partition_for
from mesh.log import get_logger
from mesh.settings import Settings
from mesh.supervisor import RestartPolicy

COMPONENT = "agent-manager"
_GUARD_POLL_MS = 500

log = get_logger("mesh.agentmanager")


@dataclasses.dataclass
class _Note:
    key: AttemptKey
    kind: WaitingReason
    record: Outgoing


class AgentManager(Dispatcher):
    """Assigns ready tasks to agents: ``await AgentManager(settings).run(stop)``."""

    VIEW_TOPICS = ("agents", "agents.heartbeats", "tasks.results", "breakers")

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
    ) -> None:
        self.policy = policy or HealthPolicy()
        super().__init__(
            settings,
            group_id=group_id or settings.group("agent-manager"),
            transactional=transactional,
            instance=instance,
            liveness_intervals=self.policy.unhealthy_after + 1,
        )
        self.me = Producer(component=COMPONENT, instance=self.me.instance)
        self.registry = Registry(self.policy)
        self.directory = self.registry
        self.strategy: Strategy = strategy
        self.guard = guard
        self._rng = random.Random(seed)  # noqa: S311 - load balancing, not cryptography
        self._now: datetime | None = None
        self._states: dict[str, AgentState] = {}
        self._dead: list[str] = []
        self._notes: dict[TopicPartition, list[_Note]] = {}
        self._noted: dict[AttemptKey, WaitingReason] = {}
        self._reassigning: dict[TopicPartition, list[TaskReassigned]] = {}
        self._folded: dict[int, int] = {}
        self.decisions = 0
        """Placement decisions made (assigned or not), for benchmarks and metrics."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Manage assignments until ``stop`` is set."""
        guard = asyncio.create_task(self._guard(stop)) if self.guard else None
        calls = CallServer(
            self.settings,
            "agent-manager",
            self.api_handlers(),
            me=self.me,
            group_id=f"{self.group_id}-calls",
        )
        calls_task = asyncio.create_task(calls.run(stop))
        try:
            await super().run(stop)
        finally:
            await cancel_and_wait(guard, calls_task)

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

    # -- the view ----------------------------------------------------------------------------

    def _fold(self, topic: str, record: Any, agents: str, beats: str) -> None:
        if topic == agents:
            self._fold_registry(record)
            self._folded[record.partition] = record.offset
        elif topic == self.settings.topic("breakers"):
            self._fold_breaker(record)
        else:
            super()._fold(topic, record, agents, beats)

    def _fold_registry(self, record: Any) -> None:
        key = record.key.decode(errors="replace") if record.key is not None else None
        position = (record.partition, record.offset)
        if record.value is None:
            self.registry.fold_registry(position, key, None)
            return
        try:
            event = self.mapper.decode(record.value, record.headers)
        except EventError as exc:
            self.registry.refuse(position, key, f"unreadable registration: {exc}")
            return
        self.registry.fold_registry(position, key, event)
        refusal = self.registry.refused.get(position)
        if refusal is not None:
            log.warning("registration refused", agent_id=key, reason=refusal.reason)

    def _fold_breaker(self, record: Any) -> None:
        name = record.key.decode(errors="replace") if record.key is not None else None
        if name is None:
            return
        if record.value is None:
            self.registry.on_breaker(name, None)
            return
        try:
            event = self.mapper.decode(record.value, record.headers)
        except EventError as exc:
            log.warning("unreadable breaker record skipped", name=name, error=str(exc))
            return
        if isinstance(event, BreakerStateChanged):
            self.registry.on_breaker(name, event)

    # -- placement ---------------------------------------------------------------------------

    def agents(self, now: datetime) -> dict[str, AgentState]:
        """The agents at ``now``, computed once per round (placements update the copies)."""
        if self._now is not now:
            self._now = now
            self._states = {a.agent_id: a for a in self.registry.agents(now)}
            self._dead = self.registry.presumed_dead(now)
        return self._states

    def _place(self, pending: _Pending, views: Any, now: datetime) -> TaskAssigned | None:
        ready = pending.ready
        states = self.agents(now)
        requirements = Requirements.of(ready.task)
        if self.resource_gate:  # the allocator granted them already: do not count them twice
            requirements = dataclasses.replace(requirements, resources=Resources())
        self.decisions += 1
        chosen = choose(match_capabilities(requirements, states.values()), self.strategy, self._rng)
        if chosen is None:
            kind, reason, ids = why_not(requirements, states.values())
            self._note(pending, kind, reason, ids, placed=False)
            if not pending.announced:
                pending.announced = True
                log.warning(
                    "no agent can take the task; it waits",
                    workflow_id=ready.workflow_id,
                    task_id=ready.task_id,
                    attempt=ready.attempt,
                    reason=reason,
                )
            return None
        agent = chosen.agent
        avoided = sorted(
            a.agent_id
            for a in states.values()
            if a.breaker != "closed"
            and a.unavailable() is not None
            and covers(requirements.required, a.capabilities)
        )
        if avoided:
            why = f"circuit breaker open on {', '.join(avoided)}; placed on {agent.agent_id}"
            self._note(pending, "breaker_open", why, tuple(avoided), placed=True)
        states[agent.agent_id] = dataclasses.replace(agent, outstanding=agent.outstanding + 1)
        return TaskAssigned(
            **meta(self.me, causation=ready),
            workflow_id=ready.workflow_id,
            task_id=ready.task_id,
            attempt=ready.attempt,
            agent_id=agent.agent_id,
            task=ready.task,
            deadline=ready.deadline,
        )

    def _note(
        self,
        pending: _Pending,
        kind: WaitingReason,
        reason: str,
        agent_ids: Sequence[str],
        *,
        placed: bool,
    ) -> None:
        """Queue a TaskWaiting for the attempt, unless this reason was already published."""
        if self._noted.get(pending.key) == kind:
            return
        tp = TopicPartition(pending.record.topic, pending.record.partition)
        notes = self._notes.setdefault(tp, [])
        if any(n.key == pending.key and n.kind == kind for n in notes):
            return
        ready = pending.ready
        event = TaskWaiting(
            **meta(self.me, causation=ready),
            workflow_id=ready.workflow_id,
            task_id=ready.task_id,
            attempt=ready.attempt,
            reason_kind=kind,
            reason=reason[:500],
            placed_elsewhere=placed,
            agent_ids=tuple(agent_ids)[:1_000],
        )
        notes.append(_Note(pending.key, kind, self._for_results(event)))

    def _for_results(self, event: TaskWaiting | TaskReassigned) -> Outgoing:
        encoded = self.mapper.encode(event)
        keyed = Encoded(event.workflow_id.encode(), encoded.value, encoded.headers)
        return (self.settings.topic("tasks.results"), keyed)

    # -- per-round additions to a partition's transaction --------------------------------------

    def _before_flush(self, part: _Partition, waiting: Sequence[_Pending], now: datetime) -> None:
        notes = self._notes.get(part.tp, [])
        part.outbox.extend(note.record for note in notes)
        reassigned = self._reassignments(part, now)
        self._reassigning[part.tp] = reassigned
        part.outbox.extend(self._for_results(event) for event in reassigned)

    def _after_flush(self, part: _Partition, records: Sequence[Outgoing]) -> None:
        for note in self._notes.pop(part.tp, []):
            self._noted[note.key] = note.kind
        for event in self._reassigning.pop(part.tp, []):
            self.registry.on_result(event)
            log.warning(
                "attempt reassigned",
                workflow_id=event.workflow_id,
                task_id=event.task_id,
                attempt=event.attempt,
                from_agent_id=event.from_agent_id,
                reason=event.reason,
            )
        live = {p.key for q in self._parts.values() for p in q.pending}
        for key in [k for k in self._noted if k not in live]:
            del self._noted[key]

    def _reassignments(self, part: _Partition, now: datetime) -> list[TaskReassigned]:
        """TaskReassigned for the open attempts of dead agents whose workflow is ours."""
        self.agents(now)
        if not self._dead:
            return []
        partitions = self._ready_partitions(part.tp.topic)
        found = []
        for agent_id in self._dead:
            missed = self._states[agent_id].missed_heartbeats if agent_id in self._states else 0
            for assigned in self.registry.open_attempts(agent_id):
                if partition_for(assigned.workflow_id, partitions) != part.tp.partition:
                    continue
                found.append(
                    TaskReassigned(
                        **meta(self.me, causation=assigned),
                        workflow_id=assigned.workflow_id,
                        task_id=assigned.task_id,
                        attempt=assigned.attempt,
                        from_agent_id=agent_id,
                        reason=f"heartbeats missed ({missed:g}); agent presumed dead",
                    )
                )
        return found

    def _ready_partitions(self, topic: str) -> list[int]:
        known = self._plain_producer.client.cluster.partitions_for_topic(topic)
        return sorted(known) if known else sorted(tp.partition for tp in self._parts)

    # -- the registry guard: refused registrations to the DLQ, once ---------------------------

    async def _guard(self, stop: asyncio.Event) -> None:
        kwargs = client_kwargs(self.settings)
        consumer = AIOKafkaConsumer(
            **kwargs,
            group_id=self.settings.group("agent-manager-registry"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        producer = AIOKafkaProducer(**kwargs, acks="all")
        try:
            with kafka_errors(self.settings, "start the agent registry guard"):
                await consumer.start()
                await producer.start()
            consumer.subscribe([self.settings.topic("agents")])
            while not stop.is_set():
                with kafka_errors(self.settings, "read the agent registry"):
                    batch = await consumer.getmany(timeout_ms=_GUARD_POLL_MS)
                for tp, records in batch.items():
                    for record in records:
                        await self._judged(record)
                        refusal = self.registry.refused.pop((tp.partition, record.offset), None)
                        if refusal is not None:
                            letter = dead_letter(
                                record,
                                RegistrationRefused(refusal.reason),
                                COMPONENT,
                                producer=self.me,
                                max_event_bytes=self.settings.max_event_bytes,
                            )
                            with kafka_errors(self.settings, "dead-letter a registration"):
                                await producer.send_and_wait(
                                    self.settings.topic("dlq"),
                                    letter.value,
                                    key=letter.key,
                                    headers=letter.headers,
                                )
                    with kafka_errors(self.settings, "commit the registry guard's offset"):
                        await consumer.commit({tp: records[-1].offset + 1})
        finally:
            await stop_clients(consumer, producer)

    async def _judged(self, record: Any) -> None:
        """Wait until the view has folded ``record`` (so its verdict is known)."""
        while self._folded.get(record.partition, -1) < record.offset:
            self._view_moved.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._view_moved.wait()


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
        folded=lambda: manager._folded,
    )
    jobs = [asyncio.ensure_future(manager.run(stop)), asyncio.ensure_future(agents.serve(stop))]
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
