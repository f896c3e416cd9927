"""Everything an agent produces, each record acknowledged by the broker before it goes on.

Results are keyed by workflow id (the Workflow Manager's partitioning); what the agent says about
itself is keyed by its id or its breaker's name, as the event's subject.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    BreakerStateChanged,
    Event,
    Mapper,
    PayloadRef,
    TaskCompleted,
    TaskFailed,
    TaskOutput,
    TaskProgress,
    TaskStarted,
)
from mesh.kafka.connection import kafka_errors
from mesh.kafka.faults import ack_seconds, acknowledged
from mesh.kafka.payloads import PayloadStore
from mesh.log import get_logger
from mesh.observe import metrics
from mesh.settings import Settings

Headers = list[tuple[str, bytes]]

log = get_logger("mesh.agents")

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
    TaskOutput: "tasks.output",
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

    async def publish(self, event: Event, *, wait: bool = True) -> None:
        """Produce ``event`` to its channel and (unless ``wait`` is False) wait for the broker's
        acknowledgement; a record not waited for is still sent, in order, and its failure is
        logged (the producer's later records on its partition fail with it)."""
        key, value, headers = self.mapper.encode(event)
        if isinstance(event, TaskStarted | TaskProgress | TaskCompleted | TaskFailed | TaskOutput):
            key = event.workflow_id.encode()
        if wait:
            await self.send(_CHANNEL[type(event)], key, value, headers)
            return
        topic = self.settings.topic(_CHANNEL[type(event)])
        with kafka_errors(self.settings, f"produce to {topic}"):
            future = await self._producer.send(topic, value, key=key, headers=headers)
        metrics.SENT.labels(topic).inc()
        future.add_done_callback(_logged)

    async def remove(self, channel: str, key: str) -> None:
        """A tombstone for ``key`` on the compacted ``channel``."""
        await self.send(channel, key.encode(), None)

    async def put_payload(
        self, store: PayloadStore, data: bytes, *, correlation_id: str
    ) -> PayloadRef:
        """Store ``data`` on ``payloads`` and wait for every chunk; its reference."""
        topic = self.settings.topic("payloads")
        with kafka_errors(self.settings, f"produce to {topic}"):
            return await acknowledged(
                store.put(self._producer, data, correlation_id=correlation_id),
                ack_seconds(self.settings.request_timeout_ms),
            )

    async def send(
        self, channel: str, key: bytes, value: bytes | None, headers: Headers | None = None
    ) -> None:
        """Produce one raw record to the logical topic ``channel``."""
        topic = self.settings.topic(channel)
        with kafka_errors(self.settings, f"produce to {topic}"):
            sent = self._producer.send_and_wait(topic, value, key=key, headers=headers)
            await acknowledged(sent, ack_seconds(self.settings.request_timeout_ms))
        metrics.SENT.labels(topic).inc()


def _logged(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("record not acknowledged", error=str(future.exception()))


__all__ = ["Headers", "Outbox"]
