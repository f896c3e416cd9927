"""Agents and their health as the Agent Manager sees them, read from the topics (``mesh agents
list|health``; spawning and terminating are calls of :class:`mesh.Client`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.agentmanager import AgentState, HealthPolicy, Registry
from mesh.errors import EventError
from mesh.events import AgentHeartbeat, BreakerStateChanged, Mapper
from mesh.kafka import ConsumedRecord
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.partitions import topic_partitions
from mesh.settings import Settings


@dataclass(frozen=True)
class AgentReport:
    """An agent as the Agent Manager would see it now, with its last heartbeat."""

    state: AgentState
    heartbeat: AgentHeartbeat | None

    def as_json(self) -> dict[str, Any]:
        state, beat = self.state, self.heartbeat
        capabilities = [c.model_dump(mode="json", exclude_none=True) for c in state.capabilities]
        return {
            "agent_id": state.agent_id,
            "kind": state.kind,
            "capabilities": capabilities,
            "max_concurrency": state.max_concurrency,
            "status": state.status,
            "health": state.health,
            "missed_heartbeats": state.missed_heartbeats,
            "last_seen": state.last_seen.isoformat(),
            "breaker": state.breaker,
            "host": state.host,
            "pid": int(state.labels["pid"]) if state.labels.get("pid", "").isdigit() else None,
            "version": state.version,
            "running_tasks": beat.running_tasks if beat is not None else None,
            "load": beat.load if beat is not None else None,
            "reported_health": beat.health if beat is not None else None,
            "heartbeat_interval_seconds": beat.interval_seconds if beat is not None else None,
        }


async def agent_states(
    settings: Settings, *, policy: HealthPolicy | None = None
) -> list[AgentReport]:
    """Every registered agent with its health now, folded from ``agents``,
    ``agents.heartbeats`` and ``breakers`` as they are at the call (read to their end)."""
    registry = Registry(policy)
    beats: dict[str, AgentHeartbeat] = {}
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        with kafka_errors(settings, "read the agent registry"):
            await consumer.start()
            tps = [
                TopicPartition(settings.topic(name), p)
                for name in ("agents", "agents.heartbeats", "breakers")
                for p in await topic_partitions(consumer, settings, settings.topic(name))
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            remaining = {tp for tp, end in ends.items() if end > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        _fold(registry, beats, mapper, tp.topic, settings, record)
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await stop_clients(consumer)
    return [
        AgentReport(state, beats.get(state.agent_id))
        for state in registry.agents(datetime.now(UTC))
    ]


def _fold(
    registry: Registry,
    beats: dict[str, AgentHeartbeat],
    mapper: Mapper,
    topic: str,
    settings: Settings,
    record: ConsumedRecord,
) -> None:
    key = record.key.decode(errors="replace") if record.key is not None else None
    if key is None:
        return
    event = None
    if record.value is not None:
        try:
            event = mapper.decode(record.value, record.headers)
        except EventError:
            return
    if topic == settings.topic("agents"):
        registry.fold_registry((record.partition, record.offset), key, event)
    elif topic == settings.topic("agents.heartbeats"):
        if isinstance(event, AgentHeartbeat):
            registry.on_heartbeat(event)
            known = beats.get(event.agent_id)
            if known is None or known.occurred_at <= event.occurred_at:
                beats[event.agent_id] = event
    elif event is None or isinstance(event, BreakerStateChanged):
        registry.on_breaker(key, event)


__all__ = ["AgentReport", "agent_states"]
