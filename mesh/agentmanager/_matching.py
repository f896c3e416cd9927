"""Capability matching and load balancing: requirements → ranked candidates → one agent (pure).

``match_capabilities`` keeps the agents that may take an attempt now (they cover every required
capability, have the resources it needs free, are healthy or degraded, ready, and their breaker
is not open — a half-open breaker admits one probe at a time) and ranks them: more preferred
capabilities first, then the least outstanding work weighted by capacity.

Two strategies pick from that list:

- ``least_loaded``: the head of the ranking (deterministic; ties by agent id);
- ``power_of_two``: two random candidates of the best preference tier, the less loaded one wins
  (Mitzenmacher's "power of two choices": near-optimal balance without every replica herding
  onto the same least-loaded agent between two views of the load).
"""

from __future__ import annotations

import bisect
import functools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from mesh.agentmanager._health import ASSIGNABLE, HealthStatus
from mesh.events import (
    AgentKind,
    BreakerState,
    Capability,
    CapabilityRequirement,
    Resources,
    TaskSpec,
    WaitingReason,
    covers,
)

DEFAULT_HEARTBEAT_SECONDS = 5.0
"""Interval assumed for an agent that registered but has not sent a heartbeat yet."""

Strategy = Literal["least_loaded", "power_of_two"]
STRATEGIES: tuple[Strategy, ...] = ("least_loaded", "power_of_two")


@dataclass(frozen=True)
class Requirements:
    """What an attempt needs (``required``), would like (``preferred``) and consumes."""

    required: tuple[CapabilityRequirement, ...] = ()
    preferred: tuple[CapabilityRequirement, ...] = ()
    resources: Resources = field(default_factory=Resources)

    @classmethod
    def of(cls, task: TaskSpec) -> Requirements:
        return cls(required=tuple(task.capabilities), resources=task.resources)


@dataclass(frozen=True)
class AgentState:
    """One registered agent as the Agent Manager sees it at a moment."""

    agent_id: str
    kind: AgentKind
    capabilities: tuple[Capability, ...]
    max_concurrency: int
    outstanding: int
    health: HealthStatus
    missed_heartbeats: float
    last_seen: datetime
    status: str = "ready"
    breaker: BreakerState = "closed"
    resources_free: Resources | None = None
    labels: dict[str, str] = field(default_factory=dict)
    host: str | None = None
    version: str = ""

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """The names of its capabilities (kept: placement asks for them per decision)."""
        return frozenset(c.name for c in self.capabilities)

    @property
    def load(self) -> float:
        """Outstanding attempts per unit of capacity."""
        return self.outstanding / self.max_concurrency

    def unavailable(self) -> str | None:
        """Why this agent may not take new work now, or None if it may."""
        if self.health not in ASSIGNABLE:
            return f"agent is {self.health}"
        if self.status != "ready":
            return f"agent is {self.status}"
        if self.breaker == "open":
            return "circuit breaker open"
        if self.breaker == "half_open" and self.outstanding > 0:
            return "circuit breaker half-open, probe in flight"
        return None


@dataclass(frozen=True)
class Candidate:
    """An agent that may take the attempt, with what ranked it."""

    agent: AgentState
    preferred: int
    """Preferred capabilities it meets."""

    @property
    def rank(self) -> tuple[int, float, int, str]:
        agent = self.agent
        after = (agent.outstanding + 1) / agent.max_concurrency
        return (-self.preferred, after, agent.outstanding, agent.agent_id)


_INCOMPRESSIBLE = ("memory_mb", "storage_mb", "gpu")
"""Resources a task cannot run without. CPU and network are compressible: a busy host runs the
task slower, not never, and an agent reports free CPU from the load average, which any other
process on the host moves; the Resource Allocator accounts for them instead."""


def fits(needs: Resources, free: Resources | None) -> bool:
    """True if nothing is needed, nothing is known, or every needed incompressible resource is
    free on the agent's host."""
    if free is None:
        return True
    return all(getattr(needs, d) <= getattr(free, d) for d in _INCOMPRESSIBLE if getattr(needs, d))


def match_capabilities(requirements: Requirements, agents: Iterable[AgentState]) -> list[Candidate]:
    """The agents that may take an attempt with ``requirements`` now, best first."""
    found = [
        Candidate(agent, _preferred(requirements.preferred, agent.capabilities))
        for agent in agents
        if agent.unavailable() is None
        and covers(requirements.required, agent.capabilities)
        and fits(requirements.resources, agent.resources_free)
    ]
    found.sort(key=lambda c: c.rank)
    return found


def choose(
    candidates: Sequence[Candidate], strategy: Strategy, rng: random.Random | None = None
) -> Candidate | None:
    """One candidate of a ranked list, by ``strategy``; None if the list is empty."""
    if not candidates:
        return None
    if strategy == "least_loaded" or len(candidates) == 1:
        return candidates[0]
    best = candidates[0].preferred
    tier = [c for c in candidates if c.preferred == best]
    if len(tier) == 1:
        return tier[0]
    first, second = (rng or random).sample(tier, 2)
    return min(first, second, key=lambda c: c.rank)


def why_not(
    requirements: Requirements, agents: Iterable[AgentState]
) -> tuple[WaitingReason, str, tuple[str, ...]]:
    """Why no agent matches: the reason kind, a sentence, and the capable agents ruled out."""
    names = ", ".join(r.name for r in requirements.required) or "no capability"
    capable = [a for a in agents if covers(requirements.required, a.capabilities)]
    if not capable:
        return "no_capable_agent", f"no registered agent has [{names}]", ()
    ids = tuple(sorted(a.agent_id for a in capable))
    blocked = [a for a in capable if a.breaker != "closed" and a.unavailable() is not None]
    if blocked and len(blocked) == len([a for a in capable if a.unavailable() is not None]):
        why = "; ".join(f"{a.agent_id}: {a.unavailable()}" for a in blocked[:10])
        return "breaker_open", f"every agent with [{names}] is behind its breaker ({why})", ids
    why = "; ".join(
        f"{a.agent_id}: {a.unavailable() or 'lacks the resources'}" for a in capable[:10]
    )
    return "no_healthy_agent", f"no agent with [{names}] can take work now ({why})", ids


class Placer:
    """One round's placement over the agents at a moment: the same choice as
    ``choose(match_capabilities(...))``, indexed so that a decision does not scan every agent.

    The agents that may take work now are kept per capability name, ordered by rank (load
    after one more attempt, then outstanding, then id). A requirement of one capability by name
    — what nearly every task asks — takes the head of its list (``least_loaded``) or the better
    of two drawn from it (``power_of_two``), skipping agents whose host lacks the resources; any
    other requirement (levels, tags, several capabilities, preferences) is matched by scanning,
    as before. ``took`` records a placement, so the next decision sees the agent's new load.
    """

    def __init__(self, agents: Iterable[AgentState]) -> None:
        self.states: dict[str, AgentState] = {a.agent_id: a for a in agents}
        self._by_name: dict[str, list[tuple[float, int, str]]] = {}
        for agent in self.states.values():
            if agent.unavailable() is None:
                for name in agent.names:
                    self._by_name.setdefault(name, []).append(_rank(agent))
        for ranked in self._by_name.values():
            ranked.sort()
        self._breaking = [a.agent_id for a in self.states.values() if a.breaker != "closed"]

    def place(
        self, requirements: Requirements, strategy: Strategy, rng: random.Random | None = None
    ) -> Candidate | None:
        """The candidate chosen for an attempt with ``requirements``, or None."""
        simple = _simple(requirements)
        if simple is None:
            return choose(match_capabilities(requirements, self.states.values()), strategy, rng)
        ranked = self._by_name.get(simple, [])
        needs = requirements.resources
        if strategy == "least_loaded" or len(ranked) < 2:
            for _, _, agent_id in ranked:
                agent = self.states[agent_id]
                if fits(needs, agent.resources_free):
                    return Candidate(agent, 0)
            return None
        draw = rng or random
        if needs != Resources():  # a host may lack them: draw among those that have them
            fitting = [a for _, _, a in ranked if fits(needs, self.states[a].resources_free)]
            if len(fitting) < 2:
                return Candidate(self.states[fitting[0]], 0) if fitting else None
            first, second = draw.sample(fitting, 2)
        else:
            i, j = draw.sample(range(len(ranked)), 2)
            first, second = ranked[i][2], ranked[j][2]
        best = min((self.states[first], self.states[second]), key=lambda a: _rank(a))
        return Candidate(best, 0)

    def breaking(self) -> list[AgentState]:
        """The agents whose breaker is not closed (few, usually none)."""
        return [self.states[agent_id] for agent_id in self._breaking]

    def took(self, agent_id: str) -> AgentState:
        """Count one more attempt on ``agent_id``; its new state."""
        before = self.states[agent_id]
        after = AgentState.__new__(AgentState)  # a copy with one more attempt (no replace():
        after.__dict__.update(before.__dict__)  # it re-runs __init__ per placement)
        object.__setattr__(after, "outstanding", before.outstanding + 1)
        self.states[agent_id] = after
        if before.unavailable() is None:
            old, new = _rank(before), _rank(after)
            available = after.unavailable() is None
            for name in before.names:
                ranked = self._by_name[name]
                ranked.pop(bisect.bisect_left(ranked, old))
                if available:
                    bisect.insort(ranked, new)
        return after


def _rank(agent: AgentState) -> tuple[float, int, str]:
    """The ranking of :class:`Candidate` without preferences: load after one more attempt."""
    return ((agent.outstanding + 1) / agent.max_concurrency, agent.outstanding, agent.agent_id)


def _simple(requirements: Requirements) -> str | None:
    """The one capability name a requirement asks for by name alone, or None."""
    if requirements.preferred or len(requirements.required) != 1:
        return None
    (only,) = requirements.required
    if only.min_level is not None or only.tags:
        return None
    return only.name


def _preferred(preferred: Sequence[CapabilityRequirement], caps: Sequence[Capability]) -> int:
    return sum(1 for req in preferred if any(req.met_by(cap) for cap in caps))


__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "STRATEGIES",
    "AgentState",
    "Candidate",
    "Placer",
    "Requirements",
    "Strategy",
    "choose",
    "fits",
    "match_capabilities",
    "why_not",
]
