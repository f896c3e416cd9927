"""The Agent Manager: registry, health, capability matching, load balancing, reassignment,
circuit breakers and the lifecycle of local agent processes.

Layers, each importing only those above it::

    _health     healthy / degraded / unhealthy / offline from missed heartbeats   (pure)
    _matching   requirements → ranked candidates → one agent, by strategy          (pure)
    _registry   the one agent model: registry verdicts, heartbeats, load, breakers (pure)
    _gate       the resource gate: place an attempt once its allocation exists     (pure)
    _view       one record of the view's topics folded into registry and gate      (pure)

The component (assignment, the registry guard, the lifecycle of local agents, the API) is
:mod:`mesh.agentmanager.runtime`.
"""

from mesh.agentmanager._gate import (
    UNANSWERED_SECONDS,
    GateAnswer,
    ResourceGate,
    ended_notice,
    queued_notice,
    unanswered_notice,
)
from mesh.agentmanager._health import HealthPolicy, HealthStatus, classify, missed_heartbeats
from mesh.agentmanager._matching import (
    STRATEGIES,
    AgentState,
    Candidate,
    Placer,
    Requirements,
    Strategy,
    choose,
    fits,
    match_capabilities,
    why_not,
)
from mesh.agentmanager._registry import (
    FINISHED_KEPT,
    AttemptKey,
    Position,
    Refusal,
    Registry,
    attempt_key,
)
from mesh.agentmanager._view import CHANNELS, AgentView
from mesh.breakers import breaker_name

__all__ = [
    "CHANNELS",
    "FINISHED_KEPT",
    "STRATEGIES",
    "UNANSWERED_SECONDS",
    "AgentState",
    "AgentView",
    "AttemptKey",
    "Candidate",
    "GateAnswer",
    "HealthPolicy",
    "HealthStatus",
    "Placer",
    "Position",
    "Refusal",
    "Registry",
    "Requirements",
    "ResourceGate",
    "Strategy",
    "attempt_key",
    "breaker_name",
    "choose",
    "classify",
    "ended_notice",
    "fits",
    "match_capabilities",
    "missed_heartbeats",
    "queued_notice",
    "unanswered_notice",
    "why_not",
]
