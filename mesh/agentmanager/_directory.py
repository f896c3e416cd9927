"""The dispatcher's view of the agents, folded from Kafka alone (so any replica can rebuild it).

Three inputs, read from the beginning without a consumer group:

- ``agents`` (compacted registry): the last record per agent id wins; ``AgentTerminated`` or a
  tombstone removes the agent;
- ``agents.heartbeats``: the latest sign of life, its interval and the agent's own health;
- ``tasks.results``: ``TaskAssigned`` copies (what was dispatched) and ``TaskCompleted`` /
  ``TaskFailed`` (what finished). Open assignments per agent give its outstanding load; the set of
  attempts ever assigned lets a restarted dispatcher skip ``TaskReady`` records it re-reads.

The three topics are read concurrently, so the fold compares event times rather than trusting
the order records arrive in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from mesh.agentmanager._matching import DEFAULT_HEARTBEAT_SECONDS, AgentView
from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    Event,
    Health,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskReassigned,
)

AttemptKey = tuple[str, str, int]
"""(workflow id, task id, attempt)"""


@dataclass(frozen=True)
class _Beat:
    at: datetime
    interval: float
    health: Health


@dataclass(frozen=True)
class _Registration:
    description: AgentRegistered | AgentUpdated
    registered_at: datetime


def attempt_key(event: TaskAssigned | TaskCompleted | TaskFailed | TaskReassigned) -> AttemptKey:
    return (event.workflow_id, event.task_id, event.attempt)


class AgentDirectory:
    """Registry, liveness and outstanding assignments; pure, fed one event at a time."""

    def __init__(self) -> None:
        self._agents: dict[str, _Registration] = {}
        self._beats: dict[str, _Beat] = {}
        self._assigned: dict[AttemptKey, str] = {}
        self._open: dict[AttemptKey, tuple[str, datetime]] = {}
        self._open_events: dict[AttemptKey, TaskAssigned] = {}
        self._finished: set[AttemptKey] = set()
        self._outstanding: Counter[str] = Counter()
        self.version = 0
        """Bumped on every change, so a caller can tell whether to re-run placement."""

    # -- registry ----------------------------------------------------------------------------

    def on_registry(self, agent_id: str, event: Event | None) -> None:
        """A record of ``agents``: a description, a termination, or a tombstone (None)."""
        self.version += 1
        if event is None or isinstance(event, AgentTerminated):
            self._agents.pop(agent_id, None)
            return
        if isinstance(event, AgentRegistered):
            self._agents[agent_id] = _Registration(event, event.occurred_at)
            self._forget_before(agent_id, event.occurred_at)
        elif isinstance(event, AgentUpdated):
            known = self._agents.get(agent_id)
            since = known.registered_at if known is not None else event.occurred_at
            self._agents[agent_id] = _Registration(event, since)

    def on_heartbeat(self, beat: AgentHeartbeat) -> None:
        known = self._beats.get(beat.agent_id)
        if known is not None and known.at > beat.occurred_at:
            return
        self._beats[beat.agent_id] = _Beat(beat.occurred_at, beat.interval_seconds, beat.health)
        self.version += 1

    def _forget_before(self, agent_id: str, since: datetime) -> None:
        """A (re)registered agent is a new process: what its predecessor held is gone."""
        stale = [k for k, (a, at) in self._open.items() if a == agent_id and at < since]
        for key in stale:
            self._close(key)

    # -- assignments -------------------------------------------------------------------------

    def on_result(self, event: Event) -> None:
        """A record of ``tasks.results``; only assignments and final outcomes matter here."""
        if isinstance(event, TaskAssigned):
            self.record(event)
        elif isinstance(event, TaskCompleted | TaskFailed | TaskReassigned):
            # A reassigned attempt is over for its agent: the next attempt is a new key.
            key = attempt_key(event)
            self._finished.add(key)
            self._close(key)
            self.version += 1

    def record(self, assigned: TaskAssigned) -> None:
        """An assignment was made (by this dispatcher or seen on ``tasks.results``)."""
        key = attempt_key(assigned)
        self._assigned[key] = assigned.agent_id
        if key in self._open or key in self._finished:
            return
        registration = self._agents.get(assigned.agent_id)
        if registration is not None and registration.registered_at > assigned.occurred_at:
            return  # made to a previous incarnation of the agent
        self._open[key] = (assigned.agent_id, assigned.occurred_at)
        self._open_events[key] = assigned
        self._outstanding[assigned.agent_id] += 1
        self.version += 1

    def _close(self, key: AttemptKey) -> None:
        held = self._open.pop(key, None)
        self._open_events.pop(key, None)
        if held is not None:
            self._outstanding[held[0]] -= 1
            if self._outstanding[held[0]] <= 0:
                del self._outstanding[held[0]]

    def is_assigned(self, key: AttemptKey) -> bool:
        """True if this attempt was already given to an agent."""
        return key in self._assigned

    def outstanding(self, agent_id: str) -> int:
        return self._outstanding.get(agent_id, 0)

    def open_attempts(self, agent_id: str | None = None) -> list[TaskAssigned]:
        """Assignments not finished yet (of one agent, or of all), oldest first."""
        return [
            event
            for event in self._open_events.values()
            if agent_id is None or event.agent_id == agent_id
        ]

    # -- the view placement uses -------------------------------------------------------------

    def views(self) -> list[AgentView]:
        """Every registered agent as placement sees it."""
        found: list[AgentView] = []
        for agent_id, registration in self._agents.items():
            description = registration.description
            beat = self._beats.get(agent_id)
            last_seen = registration.registered_at
            interval = DEFAULT_HEARTBEAT_SECONDS
            healthy = True
            if beat is not None:
                last_seen = max(last_seen, beat.at)
                interval = beat.interval
                healthy = beat.health != "unhealthy"
            status = description.status if isinstance(description, AgentUpdated) else "ready"
            found.append(
                AgentView(
                    agent_id=agent_id,
                    capabilities=tuple(description.capabilities),
                    max_concurrency=description.max_concurrency,
                    outstanding=self.outstanding(agent_id),
                    last_seen=last_seen,
                    heartbeat_seconds=interval,
                    ready=healthy and status == "ready",
                )
            )
        return found

    @property
    def agent_ids(self) -> list[str]:
        return list(self._agents)


__all__ = ["AgentDirectory", "AttemptKey", "attempt_key"]
