"""Which agent may run a task, and which one should: pure functions, no Kafka.

The dispatcher and the Python SDK share :func:`covers`, so an agent is only sent work one of its
functions accepts; :func:`choose_agent` is the dispatcher's whole placement policy, kept pure so it
can be tested alone and reused by the Agent Manager that will replace the simple dispatcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mesh.events import Capability, CapabilityRequirement

LIVENESS_INTERVALS = 3.0
"""An agent is live while its last sign of life is younger than this many heartbeat intervals."""

DEFAULT_HEARTBEAT_SECONDS = 5.0
"""Interval assumed for an agent that registered but has not sent a heartbeat yet."""


def meets(requirement: CapabilityRequirement, capability: Capability) -> bool:
    """True if ``capability`` satisfies ``requirement``: same name, enough level, all tags.

    An agent that does not grade itself (no level) does not meet a minimum level.
    """
    if capability.name != requirement.name:
        return False
    if requirement.min_level is not None and (
        capability.level is None or capability.level < requirement.min_level
    ):
        return False
    return set(requirement.tags) <= set(capability.tags)


def covers(
    requirements: Sequence[CapabilityRequirement], capabilities: Sequence[Capability]
) -> bool:
    """True if every requirement is met by one of ``capabilities`` (no requirements: any agent)."""
    return all(any(meets(req, cap) for cap in capabilities) for req in requirements)


@dataclass(frozen=True)
class AgentView:
    """What the dispatcher knows about one registered agent at a moment."""

    agent_id: str
    capabilities: tuple[Capability, ...]
    max_concurrency: int
    outstanding: int
    last_seen: datetime
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    ready: bool = True
    """False while the agent drains or reports itself unhealthy."""

    def live(self, now: datetime, intervals: float = LIVENESS_INTERVALS) -> bool:
        """True if the agent showed a sign of life within ``intervals`` heartbeat intervals."""
        return now - self.last_seen <= timedelta(seconds=self.heartbeat_seconds * intervals)

    @property
    def load(self) -> float:
        """Outstanding assignments relative to capacity (may exceed 1: the agent queues)."""
        return self.outstanding / self.max_concurrency


def choose_agent(
    requirements: Sequence[CapabilityRequirement],
    agents: Iterable[AgentView],
    now: datetime,
    *,
    intervals: float = LIVENESS_INTERVALS,
) -> AgentView | None:
    """The live, ready agent that covers ``requirements`` with the least load, or None.

    Ties go to fewer outstanding assignments, then to the agent id, so the choice is
    deterministic. A full agent is still chosen when it is the only capable one: agents queue
    work beyond their concurrency, and waiting here would only add a round trip.
    """
    capable = [
        view
        for view in agents
        if view.ready and view.live(now, intervals) and covers(requirements, view.capabilities)
    ]
    if not capable:
        return None
    return min(capable, key=lambda view: (view.load, view.outstanding, view.agent_id))


__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "LIVENESS_INTERVALS",
    "AgentView",
    "choose_agent",
    "covers",
    "meets",
]
