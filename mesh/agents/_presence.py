"""What an agent says about itself: its registry record and its heartbeats.

``agents`` (compacted, keyed by agent id) holds the record: registered on start, updated to
draining on shutdown, terminated and then tombstoned after a graceful stop. Heartbeats go to
``agents.heartbeats`` every interval with the load, so the Agent Manager can tell a live agent
from a dead one and balance between them.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, TypeVar

from mesh.agents._attempts import Attempts
from mesh.agents._config import WorkerConfig
from mesh.agents._host import free_resources, host_name, host_resources, mesh_version
from mesh.agents._outbox import Outbox
from mesh.agents._outcome import Runner
from mesh.errors import BrokerError
from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    Producer,
    meta,
)
from mesh.log import get_logger

log = get_logger("mesh.agents.presence")

_Described = TypeVar("_Described", AgentRegistered, AgentUpdated)


class Presence:
    """The events that describe one agent instance."""

    def __init__(self, config: WorkerConfig, runner: Runner, me: Producer) -> None:
        self.config = config
        self.runner = runner
        self.me = me
        self._started = time.monotonic()

    def registered(self) -> AgentRegistered:
        return self._description(AgentRegistered)

    def draining(self) -> AgentUpdated:
        return self._description(AgentUpdated, status="draining")

    def terminated(self) -> AgentTerminated:
        return AgentTerminated(
            **meta(self.me, correlation_id=self.config.agent_id),
            agent_id=self.config.agent_id,
            reason="stopped",
            exit_code=0,
        )

    def heartbeat(self, attempts: Attempts) -> AgentHeartbeat:
        running = attempts.running
        return AgentHeartbeat(
            **meta(self.me, correlation_id=self.config.agent_id),
            agent_id=self.config.agent_id,
            health="healthy" if attempts.fatal is None else "unhealthy",
            running_tasks=running,
            load=min(1.0, running / self.config.max_concurrency),
            resources_free=free_resources(),
            uptime_seconds=time.monotonic() - self._started,
            interval_seconds=self.config.heartbeat_interval,
        )

    async def heartbeats(self, outbox: Outbox, attempts: Attempts) -> None:
        """Beat every interval until cancelled, never waiting for a beat's acknowledgement.

        While a partition's leader moves, an acknowledgement can take the whole request timeout,
        or never come (aio-libs/aiokafka#1101); a loop that waited for it fell silent for longer
        than the Agent Manager's threshold and the agent was presumed dead while it ran an
        attempt, which then ran twice. Beats not acknowledged go out in order once the
        partition has a leader again, the newest saying the agent is alive; a beat the broker
        refuses is only logged (missing a few is what the Agent Manager tolerates)."""
        while True:
            try:
                await outbox.publish(self.heartbeat(attempts), wait=False)
            except BrokerError as exc:
                log.warning("heartbeat not published", error=str(exc))
            await asyncio.sleep(self.config.heartbeat_interval)

    def _description(self, cls: type[_Described], **extra: Any) -> _Described:
        labels = {"pid": str(os.getpid()), **self.config.labels}
        return cls(
            **meta(self.me, correlation_id=self.config.agent_id),
            agent_id=self.config.agent_id,
            kind=self.config.kind,
            capabilities=self.runner.capabilities,
            max_concurrency=self.config.max_concurrency,
            version=mesh_version(),
            host=host_name(),
            resources=host_resources(),
            labels=labels,
            **extra,
        )


__all__ = ["Presence"]
