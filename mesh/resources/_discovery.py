"""What agents report about their hosts, folded into nodes of the discovery pool.

Agents register with the resources their host offers (``AgentRegistered.resources``) and then
send heartbeats. A host is a node while at least one of its agents is alive: registered, not
terminated, and heard from within ``liveness_intervals`` heartbeat intervals. Liveness is derived
from the last heartbeat and the clock, never kept as a timer, so a rebuilt allocator reaches the
same view from the same records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    Event,
    PoolNode,
    Resources,
)
from mesh.resources._placement import CLOSED_LABEL
from mesh.resources._vectors import stack, to_resources

AgentEvent = AgentRegistered | AgentUpdated | AgentTerminated | AgentHeartbeat


@dataclass(frozen=True)
class _Agent:
    host: str
    resources: Resources
    placeable: bool
    last_seen: datetime
    interval: float


class Discovery:
    """Live agents by id and the hosts they make into nodes."""

    def __init__(self, *, liveness_intervals: float = 3.0) -> None:
        self.liveness_intervals = liveness_intervals
        self._agents: dict[str, _Agent] = {}

    def apply(self, event: Event) -> bool:
        """Fold one agent event; True if it may change the nodes."""
        if isinstance(event, AgentRegistered | AgentUpdated):
            known = self._agents.get(event.agent_id)
            status = getattr(event, "status", "ready")
            seen = max(event.occurred_at, known.last_seen) if known else event.occurred_at
            self._agents[event.agent_id] = _Agent(
                host=event.host or event.agent_id,
                resources=event.resources,
                placeable=status in ("starting", "ready"),
                last_seen=seen,
                interval=known.interval if known else 5.0,
            )
            return True
        if isinstance(event, AgentTerminated):
            return self._agents.pop(event.agent_id, None) is not None
        if isinstance(event, AgentHeartbeat):
            known = self._agents.get(event.agent_id)
            if known is None or event.occurred_at <= known.last_seen:
                return False
            self._agents[event.agent_id] = replace(
                known,
                last_seen=event.occurred_at,
                interval=event.interval_seconds,
                placeable=known.placeable and event.health != "unhealthy",
            )
        return False

    def forget(self, agent_id: str) -> bool:
        """A tombstone in the registry: the agent is gone."""
        return self._agents.pop(agent_id, None) is not None

    def alive(self, agent_id: str, now: datetime) -> bool:
        """Registered and heard from recently enough."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return False
        limit = timedelta(seconds=agent.interval * self.liveness_intervals)
        return now - agent.last_seen <= limit

    def expired(self, now: datetime) -> list[str]:
        """Agents still registered whose heartbeats stopped (to be treated as dead)."""
        return sorted(a for a in self._agents if not self.alive(a, now))

    def agents_on(self, host: str, now: datetime) -> list[str]:
        """Live agents of a host, sorted."""
        return sorted(
            a for a, info in self._agents.items() if info.host == host and self.alive(a, now)
        )

    def host_of(self, agent_id: str) -> str | None:
        """The host an agent runs on, while it is registered."""
        agent = self._agents.get(agent_id)
        return agent.host if agent else None

    def nodes(self, now: datetime) -> list[PoolNode]:
        """One node per host with a live agent that offers anything; the largest report wins."""
        hosts: dict[str, list[_Agent]] = {}
        for agent_id, agent in self._agents.items():
            if self.alive(agent_id, now):
                hosts.setdefault(agent.host, []).append(agent)
        found = []
        for host in sorted(hosts):
            agents = hosts[host]
            capacity = to_resources(stack(a.resources for a in agents).max(axis=0))
            if capacity == Resources():
                continue
            found.append(
                PoolNode(
                    node_id=host,
                    capacity=capacity,
                    labels={} if any(a.placeable for a in agents) else {CLOSED_LABEL: "true"},
                )
            )
        return found
