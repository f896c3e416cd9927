"""One agent instance's identity and limits, checked once when the process starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.agents._breaker import DEFAULT_FAIL_MAX, DEFAULT_RESET_TIMEOUT
from mesh.errors import ConfigError
from mesh.events import AgentKind


@dataclass(frozen=True)
class WorkerConfig:
    """One agent instance's identity and limits (from ``mesh agent run``)."""

    agent_id: str
    kind: AgentKind
    max_concurrency: int = 1
    heartbeat_interval: float = 5.0
    grace_period: float = 10.0
    """On shutdown, how long running attempts may go on before they are cancelled."""
    labels: dict[str, str] = field(default_factory=dict)
    breaker_fail_max: int = DEFAULT_FAIL_MAX
    """Consecutive counted failures that open the agent's circuit breaker."""
    breaker_reset_timeout: float = DEFAULT_RESET_TIMEOUT
    """Seconds an open breaker waits before it lets one trial attempt through."""

    def __post_init__(self) -> None:
        if not self.agent_id or any(c.isspace() for c in self.agent_id):
            raise ConfigError(f"agent id {self.agent_id!r} must be non-empty, without whitespace")
        if len(self.agent_id) > 200:
            raise ConfigError("agent id is longer than 200 characters")
        if self.max_concurrency < 1:
            raise ConfigError("--max-concurrency must be at least 1")
        if self.heartbeat_interval <= 0:
            raise ConfigError("--heartbeat-interval must be positive")
        if self.breaker_fail_max < 1:
            raise ConfigError("--breaker-fail-max must be at least 1")
        if self.breaker_reset_timeout <= 0:
            raise ConfigError("--breaker-reset-timeout must be positive")

    @property
    def backlog(self) -> int:
        """Attempts taken in (running or queued) before the worker stops fetching."""
        return 4 * self.max_concurrency + 16


__all__ = ["WorkerConfig"]
