"""The Agent Manager: registry, health, capability matching, load balancing, reassignment,
circuit breakers and the lifecycle of local agent processes.

Layers, each importing only those above it::

    _health     healthy / degraded / unhealthy / offline from missed heartbeats   (pure)
    _matching   requirements → ranked candidates → one agent, by strategy          (pure)
    _registry   the agent directory + verdicts, heartbeats, breaker states          (pure)

The component (assignment, the registry guard, the lifecycle of local agents, the API) is
:mod:`mesh.agentmanager.runtime`.
"""

from mesh.agentmanager._health import HealthPolicy, HealthStatus, classify, missed_heartbeats
from mesh.agentmanager._matching import (
    STRATEGIES,
    AgentState,
    Candidate,
    Requirements,
    Strategy,
    choose,
    match_capabilities,
    why_not,
)
from mesh.agentmanager._registry import Registry, breaker_name

__all__ = [
    "STRATEGIES",
    "AgentState",
    "Candidate",
    "HealthPolicy",
    "HealthStatus",
    "Registry",
    "Requirements",
    "Strategy",
    "breaker_name",
    "choose",
    "classify",
    "match_capabilities",
    "missed_heartbeats",
    "why_not",
]
