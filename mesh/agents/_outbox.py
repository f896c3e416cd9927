"""Everything an agent produces, each record acknowledged by the broker before it goes on.

Results are keyed by workflow id (the Workflow Manager's partitioning); what the agent says about
itself is keyed by its id or its breaker's name, as the event's subject.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    BreakerStateChanged,
    Event,
    Mapper,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskStarted,
)
from mesh.kafka.connection import kafka_errors
from mesh.settings import Settings

Headers = list[tuple[str, bytes]]

_CHANNEL: dict[type[Event], str] = {
    AgentRegistered: "agents",
    AgentUpdated: "agents",
    AgentTerminated: "agents",
    AgentHeartbeat: "agents.heartbeats",
    BreakerStateChanged: "breakers",
    TaskStarted: "tasks.results",
    TaskProgress: "tasks.results",
    TaskCompleted: "tasks.results",
    TaskFailed: "tasks.results",
}


class Outbox:
    """The agent's producer: events to their channels, raw records (dead letters, tombstones).

    Raises ``BrokerError`` when the broker does not take a record, ``EventError`` (e.g.
    ``EventTooLarge``) when an event cannot be encoded.
    """

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, mapper: Mapper) -> None:
        self.settings = settings
        self.mapper = mapper
        self._producer = producer

    async def publish(self, event: Event) -> None:
        """Produce ``event`` to its channel and wait for the broker's acknowledgement."""
        key, value, headers = self.mapper.encode(event)
        if isinstance(event, TaskStarted | TaskProgress | TaskCompleted | TaskFailed):
            key = event.workflow_id.encode()
        await self.send(_CHANNEL[type(event)], key, value, headers)

    async def remove(self, channel: str, key: str) -> None:
        """A tombstone for ``key`` on the compacted ``channel``."""
        await self.send(channel, key.encode(), None)

    async def send(
        self, channel: str, key: bytes, value: bytes | None, headers: Headers | None = None
    ) -> None:
        """Produce one raw record to the logical topic ``channel``."""
        topic = self.settings.topic(channel)
        with kafka_errors(self.settings, f"produce to {topic}"):
            await self._producer.send_and_wait(topic, value, key=key, headers=headers)


__all__ = ["Headers", "Outbox"]
