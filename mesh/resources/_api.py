"""The Resource Allocator in-process: :class:`Allocator` and the seed API on top of it.

The same object runs inside the component (which feeds it records and publishes what it returns)
and in a test or a script (which calls the API methods directly). Every method that changes
anything returns the events it produced, already folded into the ledger, so that the component
can publish exactly what the in-process object decided.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    Event,
    PoolDeclared,
    PoolNode,
    Priority,
    Producer,
    QuotaSet,
    ResourceDenied,
    ResourceReleased,
    ResourceRequested,
    Resources,
    meta,
    uuid7,
)
from mesh.resources._allocator import PlacerFactory, decide
from mesh.resources._cost import accrued
from mesh.resources._discovery import Discovery
from mesh.resources._ledger import Decision, Ledger
from mesh.resources._placement import NodeTable, NumpyPlacer
from mesh.resources._policies import AllocatorConfig
from mesh.resources._quotas import Quota
from mesh.resources._requests import release_target
from mesh.resources._usage import ResourceUsage, usage
from mesh.resources._vectors import stack, to_resources

COMPONENT = "resource-allocator"
_AGENT_EVENTS = (AgentRegistered, AgentUpdated, AgentTerminated, AgentHeartbeat)


@dataclass(frozen=True)
class ResourceRequest:
    """What ``allocate_resources`` takes (the seed's ``ResourceRequest``)."""

    resources: Resources
    tenant: str = "default"
    priority: Priority = "normal"
    workflow_id: str | None = None
    task_id: str | None = None
    attempt: int | None = None
    deadline: datetime | None = None
    estimated_duration_seconds: float | None = None
    pool_id: str | None = None
    allocation_id: str | None = None
    """None = a fresh id."""


def default_producer() -> Producer:
    """This process as the allocator's producer."""
    host = "".join(socket.gethostname().split()) or "host"
    return Producer(component=COMPONENT, instance=f"{host}-{os.getpid()}"[-200:])


class Allocator:
    """Pools, quotas and allocations, and the decisions over them (no I/O).

    ``clock`` gives "now" (UTC) to anything that is not passed an explicit ``now``.
    """

    def __init__(
        self,
        pools: Iterable[PoolDeclared] = (),
        quotas: Iterable[QuotaSet] = (),
        *,
        config: AllocatorConfig | None = None,
        producer: Producer | None = None,
        placer: PlacerFactory = NumpyPlacer,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config or AllocatorConfig()
        self.producer = producer or default_producer()
        self.placer = placer
        self.clock = clock
        self.ledger = Ledger()
        self.discovery = Discovery(liveness_intervals=self.config.liveness_intervals)
        self._table: NodeTable | None = None
        self._table_key: tuple[int, list[PoolNode]] | None = None
        for event in (*pools, *quotas):
            self.ledger.apply(event)

    # -- folding facts -----------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Fold a record of ``resources`` or of the agent topics; True if anything changed."""
        if isinstance(event, _AGENT_EVENTS):
            return self.discovery.apply(event)
        return self.ledger.apply(event)

    def node_table(self, now: datetime | None = None) -> NodeTable:
        """Declared pools plus the discovery pool of live agents' hosts (cached)."""
        now = now or self.clock()
        found = self.discovery.nodes(now) if self.config.discovery else []
        key = (self.ledger.pools_version, found)
        if self._table is None or self._table_key != key:
            pools = [self.ledger.pools[p] for p in sorted(self.ledger.pools)]
            if found and self.config.discovery_pool not in self.ledger.pools:
                pools.append(self._discovered(found))
            self._table, self._table_key = NodeTable.build(pools), key
        return self._table

    def _discovered(self, nodes: list[PoolNode]) -> PoolDeclared:
        return PoolDeclared(
            **meta(self.producer, correlation_id="discovery"),
            pool_id=self.config.discovery_pool,
            capacity=to_resources(stack(n.capacity for n in nodes).sum(axis=0)),
            nodes=nodes,
        )

    # -- deciding ----------------------------------------------------------------------------

    def decide(self, now: datetime | None = None) -> list[Decision]:
        """One round over every waiting request; the decisions are folded in and returned."""
        now = now or self.clock()
        if not self.ledger.waiting:
            return []
        decisions = decide(
            self.ledger,
            self.node_table(now),
            now=now,
            producer=self.producer,
            config=self.config,
            placer=self.placer,
            agent_of=lambda pool, node: self._agent_of(pool, node, now),
        )
        for decision in decisions:
            self.ledger.apply(decision)
        return decisions

    def _agent_of(self, pool_id: str, node_id: str, now: datetime) -> str | None:
        if pool_id != self.config.discovery_pool:
            return None
        agents = self.discovery.agents_on(node_id, now)
        return agents[0] if len(agents) == 1 else None

    def release(
        self, allocation_id: str, *, reason: str = "released", cause: Event | None = None
    ) -> list[Event]:
        """Give an allocation back (or withdraw a waiting request); [] if it holds nothing."""
        now = self.clock()
        envelope = (
            meta(self.producer, causation=cause, occurred_at=now)
            if cause is not None
            else meta(self.producer, correlation_id=allocation_id, occurred_at=now)
        )
        held = self.ledger.held.get(allocation_id)
        event: Event
        if held is not None:
            granted = held.event
            event = ResourceReleased(
                **envelope,
                allocation_id=allocation_id,
                pool_id=granted.pool_id,
                node_id=granted.node_id,
                resources=granted.resources,
                workflow_id=granted.workflow_id,
                task_id=granted.task_id,
                attempt=granted.attempt,
                tenant=granted.tenant,
                cost=accrued(held.rate, granted.occurred_at, now),
                reason=reason[:2_000],
            )
        elif allocation_id in self.ledger.waiting:
            asked = self.ledger.waiting[allocation_id].request
            event = ResourceDenied(
                **envelope,
                allocation_id=allocation_id,
                workflow_id=asked.workflow_id,
                task_id=asked.task_id,
                attempt=asked.attempt,
                tenant=asked.tenant,
                resources=asked.resources,
                reason=f"withdrawn: {reason}"[:2_000],
                code="withdrawn",
            )
        else:
            return []
        self.ledger.apply(event)
        return [event]

    def observe(self, event: Event) -> list[Event]:
        """React to a task or workflow ending, or an agent leaving: the releases it causes."""
        if isinstance(event, _AGENT_EVENTS):
            self.discovery.apply(event)
            return self.reconcile() if isinstance(event, AgentTerminated) else []
        target = release_target(event)
        if target is None:
            return []
        ids = self.ledger.allocations_of(target.workflow_id, target.task_id, target.attempt)
        return [out for i in ids for out in self.release(i, reason=target.reason, cause=event)]

    def reconcile(self, now: datetime | None = None) -> list[Event]:
        """Release what ran on agents that are gone (terminated, or heartbeats stopped).

        Derived from the discovery state and the clock, so a rebuilt allocator finds the same
        leftovers of agents that died while it was down.
        """
        if not self.config.discovery:
            return []
        now = now or self.clock()
        pool = self.config.discovery_pool
        hosts = {n.node_id for n in self.discovery.nodes(now)}
        released: list[Event] = []
        for allocation_id, held in sorted(self.ledger.held.items()):
            granted = held.event
            if granted.agent_id is not None and not self.discovery.alive(granted.agent_id, now):
                reason = f"agent {granted.agent_id} lost"
            elif granted.pool_id == pool and pool not in self.ledger.pools:
                if granted.node_id in hosts:
                    continue
                reason = f"host {granted.node_id} lost: no live agent on it"
            else:
                continue
            released += self.release(allocation_id, reason=reason)
        return released

    def reassert(self) -> list[Event]:
        """Current decisions of keys whose latest record is a late duplicate request, so that
        compaction keeps the decision (see ``Ledger.stale``)."""
        again = [
            self.ledger.records[i] for i in sorted(self.ledger.stale) if i in self.ledger.records
        ]
        self.ledger.stale.clear()
        return list(again)

    # -- the seed API ------------------------------------------------------------------------

    def allocate_resources(self, request: ResourceRequest | ResourceRequested) -> Decision:
        """Ask for resources: allocated now, queued with why, or denied with why."""
        return self.allocate_many([request])[0]

    def allocate_many(
        self, requests: Iterable[ResourceRequest | ResourceRequested]
    ) -> list[Decision]:
        """Ask for several at once: one round decides them all (what the component does with a
        batch of ready tasks), so they contend as simultaneous requests do. The answers, in the
        order asked."""
        events = [r if isinstance(r, ResourceRequested) else self._requested(r) for r in requests]
        for event in events:
            record = self.ledger.records.get(event.allocation_id)
            if isinstance(record, ResourceReleased):
                raise ValueError(
                    f"allocation {event.allocation_id!r} was already released; ask with a new id"
                )
        fresh = [e for e in events if not self.ledger.decided(e.allocation_id)]
        for event in fresh:
            self.ledger.apply(event)
        decided = {d.allocation_id: d for d in self.decide()} if fresh else {}
        answers: list[Decision] = []
        for event in events:
            # Decided in this round, or before it (the same request again: the same answer,
            # nothing allocated twice), or still queued from an earlier round.
            record = decided.get(event.allocation_id) or self.ledger.records[event.allocation_id]
            assert not isinstance(record, ResourceRequested | ResourceReleased)
            answers.append(record)
        return answers

    def _requested(self, request: ResourceRequest) -> ResourceRequested:
        allocation_id = request.allocation_id or str(uuid7())
        return ResourceRequested(
            **meta(
                self.producer,
                correlation_id=request.workflow_id or allocation_id,
                occurred_at=self.clock(),
            ),
            allocation_id=allocation_id,
            workflow_id=request.workflow_id,
            task_id=request.task_id,
            attempt=request.attempt,
            tenant=request.tenant,
            resources=request.resources,
            priority=request.priority,
            deadline=request.deadline,
            estimated_duration_seconds=request.estimated_duration_seconds,
            pool_id=request.pool_id,
        )

    def release_resources(self, allocation_id: str, reason: str = "released") -> list[Event]:
        """Give an allocation back; returns the release and whatever waiting work it let in."""
        released = self.release(allocation_id, reason=reason)
        return [*released, *self.decide()] if released else []

    def get_resource_usage(self, now: datetime | None = None) -> ResourceUsage:
        """What every pool and tenant holds, what waits, and what workflows cost."""
        now = now or self.clock()
        return usage(self.ledger, self.node_table(now), self.config, now)

    def set_quotas(self, quotas: Mapping[str, Quota] | Iterable[Quota | QuotaSet]) -> list[Event]:
        """Replace tenants' quotas; returns the ``QuotaSet`` events and any decisions they cause
        (a raised quota lets queued work in, a lowered one denies what can no longer fit)."""
        items = quotas.values() if isinstance(quotas, Mapping) else quotas
        events: list[Event] = [
            q if isinstance(q, QuotaSet) else q.to_event(self.producer) for q in items
        ]
        for event in events:
            self.ledger.apply(event)
        return [*events, *self.decide()]
