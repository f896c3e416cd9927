"""The Agent Manager's registry: the agent directory plus validation, health and breakers (pure).

It extends :class:`mesh.agents.AgentDirectory` (registry, heartbeats, outstanding assignments,
all folded from Kafka) with what the Agent Manager needs on top:

- a verdict per ``agents`` record: a registration whose key is not its agent id, or that gives
  a known agent id another kind, is *refused* — not folded — and remembered by its position so
  that exactly one replica (the owner of that partition in the registry guard's group) sends it
  to the DLQ. Records that do not decode (e.g. no capabilities) are refused the same way;
- the full last heartbeat (resources free, reported health);
- circuit-breaker states folded from ``breakers``;
- :meth:`agents`: every agent as an :class:`AgentState` with its health status at ``now``.

Every replica folds the same records in the same per-key order, so verdicts agree everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mesh.agentmanager._directory import AgentDirectory
from mesh.agentmanager._health import HealthPolicy, classify, missed_heartbeats
from mesh.agentmanager._matching import DEFAULT_HEARTBEAT_SECONDS, AgentState
from mesh.breakers import BREAKER_PREFIX, breaker_name
from mesh.events import (
    AgentHeartbeat,
    AgentKind,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    BreakerState,
    BreakerStateChanged,
    Event,
)

Position = tuple[int, int]
"""(partition, offset) of an ``agents`` record."""


@dataclass(frozen=True)
class Refusal:
    """A registry record that was not folded, and why."""

    agent_id: str | None
    reason: str


class Registry(AgentDirectory):
    """Agents, liveness, load, validation verdicts and breaker states."""

    def __init__(self, policy: HealthPolicy | None = None) -> None:
        super().__init__()
        self.policy = policy or HealthPolicy()
        self._kinds: dict[str, AgentKind] = {}
        self._last_beats: dict[str, AgentHeartbeat] = {}
        self._breakers: dict[str, BreakerStateChanged] = {}
        self.refused: dict[Position, Refusal] = {}
        """Refused ``agents`` records by position (small: only the bad ones)."""

    # -- the registry, validated -----------------------------------------------------------

    def check(self, key: str, event: Event) -> str | None:
        """Why the record ``key → event`` of ``agents`` must be refused, or None."""
        if not isinstance(event, AgentRegistered | AgentUpdated | AgentTerminated):
            return f"{event.type} does not belong on the agents topic"
        if event.agent_id != key:
            return f"record keyed {key!r} describes agent {event.agent_id!r}"
        if isinstance(event, AgentTerminated):
            return None
        known = self._kinds.get(key)
        if known is not None and known != event.kind:
            return (
                f"agent {key!r} is registered as a {known} agent; a registration as "
                f"{event.kind} is refused (terminate it first, or use another id)"
            )
        return None

    def fold_registry(self, position: Position, key: str | None, event: Event | None) -> None:
        """Fold one ``agents`` record (``event`` None: a tombstone) after checking it."""
        if key is None:
            self.refused[position] = Refusal(None, "registry record without a key")
            return
        if event is not None:
            reason = self.check(key, event)
            if reason is not None:
                self.refused[position] = Refusal(key, reason)
                return
        self.on_registry(key, event)
        if event is None or isinstance(event, AgentTerminated):
            self._kinds.pop(key, None)
        elif isinstance(event, AgentRegistered | AgentUpdated):
            self._kinds[key] = event.kind

    def refuse(self, position: Position, key: str | None, reason: str) -> None:
        """Record an ``agents`` record that could not even be decoded."""
        self.refused[position] = Refusal(key, reason)

    def on_heartbeat(self, beat: AgentHeartbeat) -> None:
        known = self._last_beats.get(beat.agent_id)
        if known is None or known.occurred_at <= beat.occurred_at:
            self._last_beats[beat.agent_id] = beat
        super().on_heartbeat(beat)

    # -- breakers --------------------------------------------------------------------------

    def on_breaker(self, name: str, event: BreakerStateChanged | None) -> None:
        """Fold one ``breakers`` record (None: a tombstone, the breaker is forgotten)."""
        known = self._breakers.get(name)
        if event is None:
            self._breakers.pop(name, None)
        elif known is None or known.occurred_at <= event.occurred_at:
            self._breakers[name] = event
        else:
            return
        self.version += 1

    def breaker(self, agent_id: str) -> BreakerState:
        change = self._breakers.get(breaker_name(agent_id))
        return change.new_state if change is not None else "closed"

    def breakers(self) -> dict[str, BreakerStateChanged]:
        return dict(self._breakers)

    # -- the view --------------------------------------------------------------------------

    def agents(self, now: datetime) -> list[AgentState]:
        """Every registered agent with its health at ``now``."""
        found: list[AgentState] = []
        for agent_id, registration in self._agents.items():
            description = registration.description
            beat = self._last_beats.get(agent_id)
            last_seen = registration.registered_at
            interval = DEFAULT_HEARTBEAT_SECONDS
            reported: str | None = None
            free = None
            if beat is not None and beat.occurred_at >= registration.registered_at:
                last_seen = beat.occurred_at
                interval = beat.interval_seconds
                reported = beat.health
                free = beat.resources_free
            missed = missed_heartbeats(last_seen, interval, now)
            health, _dead = classify(missed, reported, self.policy)
            status = description.status if isinstance(description, AgentUpdated) else "ready"
            found.append(
                AgentState(
                    agent_id=agent_id,
                    kind=description.kind,
                    capabilities=tuple(description.capabilities),
                    max_concurrency=description.max_concurrency,
                    outstanding=self.outstanding(agent_id),
                    health=health,
                    missed_heartbeats=round(missed, 2),
                    last_seen=last_seen,
                    status=status,
                    breaker=self.breaker(agent_id),
                    resources_free=free,
                    labels=dict(description.labels),
                    host=description.host,
                    version=description.version,
                )
            )
        return sorted(found, key=lambda a: a.agent_id)

    def presumed_dead(self, now: datetime) -> list[str]:
        """Agents silent past the policy's threshold that still hold attempts."""
        dead = []
        for state in self.agents(now):
            _, is_dead = classify(state.missed_heartbeats, None, self.policy)
            if is_dead and state.outstanding:
                dead.append(state.agent_id)
        return dead


__all__ = ["BREAKER_PREFIX", "Position", "Refusal", "Registry", "breaker_name"]
