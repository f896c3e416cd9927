"""Agent health from heartbeats: healthy, degraded, unhealthy or offline (pure).

An agent says how it feels in each heartbeat, and how long until the next one. Silence is
counted in missed heartbeats: ``elapsed / interval - 1`` (zero while the next beat is not yet
due). The policy's thresholds turn that count, and the agent's own word, into a status. An agent
that is *silent* past ``unhealthy_after`` is presumed dead: its attempts are reassigned. An agent
that *says* it is unhealthy is alive; it gets no new work but keeps what it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mesh.errors import ConfigError

HealthStatus = Literal["healthy", "degraded", "unhealthy", "offline"]
"""How the Agent Manager sees an agent."""

ASSIGNABLE: frozenset[HealthStatus] = frozenset({"healthy", "degraded"})
"""Statuses that may receive new work."""


@dataclass(frozen=True)
class HealthPolicy:
    """Missed-heartbeat thresholds; ``unhealthy_after`` is the reassignment threshold."""

    degraded_after: float = 1.0
    unhealthy_after: float = 2.0
    offline_after: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.degraded_after <= self.unhealthy_after <= self.offline_after:
            raise ConfigError(
                "missed-heartbeat thresholds must satisfy 0 < degraded <= unhealthy <= offline"
            )

    @classmethod
    def after(cls, missed_heartbeats: float) -> HealthPolicy:
        """A policy that declares an agent unhealthy after ``missed_heartbeats`` missed beats."""
        return cls(
            degraded_after=min(1.0, missed_heartbeats),
            unhealthy_after=missed_heartbeats,
            offline_after=max(missed_heartbeats * 2.5, missed_heartbeats),
        )


def missed_heartbeats(last_seen: datetime, interval: float, now: datetime) -> float:
    """Heartbeats missed since ``last_seen`` (0 while the next one is not due yet)."""
    elapsed = (now - last_seen).total_seconds()
    return max(0.0, elapsed / interval - 1.0)


def classify(
    missed: float, reported: str | None, policy: HealthPolicy
) -> tuple[HealthStatus, bool]:
    """The status, and whether the agent is presumed dead (its attempts must be reassigned)."""
    if missed >= policy.offline_after:
        return "offline", True
    if missed >= policy.unhealthy_after:
        return "unhealthy", True
    if reported == "unhealthy":
        return "unhealthy", False
    if missed >= policy.degraded_after or reported == "degraded":
        return "degraded", False
    return "healthy", False


__all__ = ["ASSIGNABLE", "HealthPolicy", "HealthStatus", "classify", "missed_heartbeats"]
