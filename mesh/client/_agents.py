"""Agents and their health as the Agent Manager sees them, read from the topics (``mesh agents
list|health``; spawning and terminating are calls of :class:`mesh.Client`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mesh.agentmanager import AgentState, AgentView, HealthPolicy, Registry
from mesh.events import AgentHeartbeat, Mapper
from mesh.kafka.reader import read_to_end
from mesh.settings import Settings


@dataclass(frozen=True)
class AgentReport:
    """An agent as the Agent Manager would see it now, with its last heartbeat."""

    state: AgentState
    heartbeat: AgentHeartbeat | None

    def as_json(self) -> dict[str, Any]:
        state, beat = self.state, self.heartbeat
        capabilities = [c.model_dump(mode="json", exclude_none=True) for c in state.capabilities]
        return {
            "agent_id": state.agent_id,
            "kind": state.kind,
            "capabilities": capabilities,
            "max_concurrency": state.max_concurrency,
            "status": state.status,
            "health": state.health,
            "missed_heartbeats": state.missed_heartbeats,
            "last_seen": state.last_seen.isoformat(),
            "breaker": state.breaker,
            "host": state.host,
            "pid": int(state.labels["pid"]) if state.labels.get("pid", "").isdigit() else None,
            "version": state.version,
            "running_tasks": beat.running_tasks if beat is not None else None,
            "load": beat.load if beat is not None else None,
            "reported_health": beat.health if beat is not None else None,
            "heartbeat_interval_seconds": beat.interval_seconds if beat is not None else None,
        }


async def agent_states(
    settings: Settings, *, policy: HealthPolicy | None = None
) -> list[AgentReport]:
    """Every registered agent with its health now, folded from ``agents``,
    ``agents.heartbeats`` and ``breakers`` as they are at the call (read to their end), the way
    the Agent Manager folds them."""
    registry = Registry(policy)
    view = AgentView(Mapper(max_event_bytes=settings.max_event_bytes), registry, gate=False)
    channels = ("agents", "agents.heartbeats", "breakers")
    await read_to_end(settings, channels, view.fold, what="read the agent registry")
    return [
        AgentReport(state, registry.heartbeat(state.agent_id))
        for state in registry.agents(datetime.now(UTC))
    ]


__all__ = ["AgentReport", "agent_states"]
