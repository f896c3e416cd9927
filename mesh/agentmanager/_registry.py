"""The Agent Manager's one agent model, folded from Kafka alone (so any replica rebuilds it).

Four inputs, read from the beginning without a consumer group:

- ``agents`` (compacted registry): the last record per agent id wins; ``AgentTerminated`` or a
  tombstone removes the agent. Each record gets a verdict: a registration whose key is not its
  agent id, or that gives a known agent id another kind, is *refused* — not folded — and
  remembered by its position so that exactly one replica (the owner of that partition in the
  registry guard's group) sends it to the DLQ. Records that do not decode are refused the same
  way. Every replica folds the same records in the same per-key order, so verdicts agree;
- ``agents.heartbeats``: the latest heartbeat (health reported, resources free, interval);
- ``tasks.results``: ``TaskAssigned`` copies (what was assigned) and ``TaskCompleted`` /
  ``TaskFailed`` / ``TaskReassigned`` (what ended). Open assignments per agent give its
  outstanding load; the set of attempts ever assigned lets a restarted replica skip
  ``TaskReady`` records it re-reads;
- ``breakers``: circuit-breaker states, so every replica routes around an open breaker.

The topics are read concurrently, so the fold compares event times rather than trusting the
order records arrive in. :meth:`Registry.agents` gives every agent as an :class:`AgentState`
with its health at a moment; placement works on those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mesh.agentmanager._health import HealthPolicy, classify, missed_heartbeats
from mesh.agentmanager._matching import DEFAULT_HEARTBEAT_SECONDS, AgentState
from mesh.breakers import breaker_name
from mesh.events import (
    AgentHeartbeat,
    AgentKind,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    BreakerState,
    BreakerStateChanged,
    Event,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskReassigned,
)

AttemptKey = tuple[str, str, int]
"""(workflow id, task id, attempt)"""

Position = tuple[int, int]
"""(partition, offset) of an ``agents`` record."""

Heard = Callable[[str], tuple[datetime | None, datetime | None]]
"""An agent id → (since when, until when) its heartbeats could be read without a gap."""


@dataclass(frozen=True)
class Refusal:
    """A registry record that was not folded, and why."""

    agent_id: str | None
    reason: str


@dataclass(frozen=True)
class _Registration:
    description: AgentRegistered | AgentUpdated
    registered_at: datetime


FINISHED_KEPT = 20_000
"""Finished attempts remembered (a few seconds to minutes of work: redeliveries come sooner)."""


def attempt_key(event: TaskAssigned | TaskCompleted | TaskFailed | TaskReassigned) -> AttemptKey:
    return (event.workflow_id, event.task_id, event.attempt)


class Registry:
    """Agents, liveness, load, validation verdicts and breaker states; pure, fed one record at
    a time."""

    def __init__(self, policy: HealthPolicy | None = None) -> None:
        self.policy = policy or HealthPolicy()
        self._agents: dict[str, _Registration] = {}
        self._kinds: dict[str, AgentKind] = {}
        self._beats: dict[str, AgentHeartbeat] = {}
        self._breakers: dict[str, BreakerStateChanged] = {}
        self._assigned: dict[AttemptKey, str] = {}
        """Agent of each attempt assigned and not finished."""
        self._open: dict[AttemptKey, TaskAssigned] = {}
        self._finished: dict[AttemptKey, None] = {}
        """The latest ``FINISHED_KEPT`` finished attempts, oldest first (an ordered set): a
        late copy of their assignment or a repeated TaskReady must not open them again. Older
        ones are dropped, so memory stays flat however many attempts have run."""
        self._outstanding: Counter[str] = Counter()
        self.refused: dict[Position, Refusal] = {}
        """Refused ``agents`` records by position (small: only the bad ones)."""
        self.version = 0
        """Bumped on every change, so a caller can tell whether to run placement again."""
        self.heard: Heard | None = None
        """Per agent, when its heartbeats' partition became readable again and when it was last
        read (set by whoever reads them: an outage of that partition is not the agent's)."""

    # -- the registry, validated -------------------------------------------------------------

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

    def refuse(self, position: Position, key: str | None, reason: str) -> None:
        """Record an ``agents`` record that could not even be decoded."""
        self.refused[position] = Refusal(key, reason)

    def on_registry(self, agent_id: str, event: Event | None) -> None:
        """A (valid) record of ``agents``: a description, a termination, or a tombstone."""
        self.version += 1
        if event is None or isinstance(event, AgentTerminated):
            self._agents.pop(agent_id, None)
            self._kinds.pop(agent_id, None)
            return
        if isinstance(event, AgentRegistered):
            self._agents[agent_id] = _Registration(event, event.occurred_at)
            self._forget_before(agent_id, event.occurred_at)
        elif isinstance(event, AgentUpdated):
            known = self._agents.get(agent_id)
            since = known.registered_at if known is not None else event.occurred_at
            self._agents[agent_id] = _Registration(event, since)
        else:
            return
        self._kinds[agent_id] = event.kind

    def on_heartbeat(self, beat: AgentHeartbeat) -> None:
        known = self._beats.get(beat.agent_id)
        if known is not None and known.occurred_at > beat.occurred_at:
            return
        self._beats[beat.agent_id] = beat
        self.version += 1

    def _forget_before(self, agent_id: str, since: datetime) -> None:
        """A (re)registered agent is a new process: what its predecessor held is gone."""
        stale = [
            k for k, e in self._open.items() if e.agent_id == agent_id and e.occurred_at < since
        ]
        for key in stale:
            self._close(key)

    @property
    def agent_ids(self) -> list[str]:
        return list(self._agents)

    def heartbeat(self, agent_id: str) -> AgentHeartbeat | None:
        """The agent's latest heartbeat, if one was seen."""
        return self._beats.get(agent_id)

    # -- assignments -------------------------------------------------------------------------

    def on_result(self, event: Event) -> None:
        """A record of ``tasks.results``; only assignments and final outcomes matter here."""
        if isinstance(event, TaskAssigned):
            self.record(event)
        elif isinstance(event, TaskCompleted | TaskFailed | TaskReassigned):
            # A reassigned attempt is over for its agent: the next attempt is a new key.
            key = attempt_key(event)
            self._finish(key)
            self._close(key)
            self.version += 1

    def _finish(self, key: AttemptKey) -> None:
        self._assigned.pop(key, None)
        self._finished[key] = None
        if len(self._finished) > FINISHED_KEPT:
            del self._finished[next(iter(self._finished))]

    def record(self, assigned: TaskAssigned) -> None:
        """An assignment was made (by this replica, or seen on ``tasks.results``)."""
        key = attempt_key(assigned)
        if key in self._finished:
            return
        self._assigned[key] = assigned.agent_id
        if key in self._open:
            return
        registration = self._agents.get(assigned.agent_id)
        if registration is not None and registration.registered_at > assigned.occurred_at:
            return  # made to a previous incarnation of the agent
        self._open[key] = assigned
        self._outstanding[assigned.agent_id] += 1
        self.version += 1

    def _close(self, key: AttemptKey) -> None:
        held = self._open.pop(key, None)
        if held is not None:
            self._outstanding[held.agent_id] -= 1
            if self._outstanding[held.agent_id] <= 0:
                del self._outstanding[held.agent_id]

    def is_assigned(self, key: AttemptKey) -> bool:
        """True if this attempt was already given to an agent (finished ones included)."""
        return key in self._assigned or key in self._finished

    def attempts_held(self) -> int:
        """How many attempts the registry holds in memory (assigned, open or finished)."""
        return len(self._assigned.keys() | self._open.keys() | self._finished.keys())

    def outstanding(self, agent_id: str) -> int:
        return self._outstanding.get(agent_id, 0)

    def open_attempts(self, agent_id: str | None = None) -> list[TaskAssigned]:
        """Assignments not finished yet (of one agent, or of all), oldest first."""
        return [e for e in self._open.values() if agent_id is None or e.agent_id == agent_id]

    # -- breakers ----------------------------------------------------------------------------

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

    # -- the view placement uses -------------------------------------------------------------

    def agents(self, now: datetime) -> list[AgentState]:
        """Every registered agent with its health at ``now``."""
        found: list[AgentState] = []
        for agent_id, registration in self._agents.items():
            description = registration.description
            beat = self._beats.get(agent_id)
            last_seen = registration.registered_at
            interval = DEFAULT_HEARTBEAT_SECONDS
            reported: str | None = None
            free = None
            if beat is not None and beat.occurred_at >= registration.registered_at:
                last_seen = beat.occurred_at
                interval = beat.interval_seconds
                reported = beat.health
                free = beat.resources_free
            since, until = self.heard(agent_id) if self.heard is not None else (None, None)
            # Silence counts only while its heartbeats could have been read: from when their
            # partition was last reachable again, up to its last successful read.
            since_seen = max(last_seen, since) if since is not None else last_seen
            missed = missed_heartbeats(since_seen, interval, min(now, until or now))
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


__all__ = ["AttemptKey", "Heard", "Position", "Refusal", "Registry", "attempt_key"]
