"""The agents as every Agent Manager replica folds them from Kafka (pure): one record of
``agents``, ``agents.heartbeats``, ``tasks.results``, ``breakers`` (and, with the resource gate,
``resources``) at a time, into the :class:`Registry` and the :class:`ResourceGate`.

The Agent Manager follows these topics live; ``mesh agents list`` reads them once to their end;
both fold through here. A record that cannot be read is skipped with a DEBUG line: the one
consumer that owns its topic dead-letters it (the registry guard for ``agents``, the guard group
for ``agents.heartbeats`` and ``breakers``, the Workflow Manager for ``tasks.results``, the
allocator for ``resources``).
An ``agents`` record that cannot be read is *refused* instead, so the guard dead-letters it.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from mesh.agentmanager._gate import ResourceGate
from mesh.agentmanager._registry import Registry
from mesh.errors import EventError
from mesh.events import (
    HEADER_TYPE,
    AgentHeartbeat,
    BreakerStateChanged,
    ConsumedRecord,
    Mapper,
)

log = structlog.get_logger("mesh.agentmanager")

CHANNELS = ("agents", "agents.heartbeats", "tasks.results", "breakers")
"""What the Agent Manager folds (``resources`` too with the resource gate on)."""


_RESULTS_FOLDED = frozenset(
    {"task.assigned", "task.completed", "task.failed", "task.reassigned", None}
)
"""Result types that open or close an attempt (None: no type header, decode to find out)."""


def _kind(record: ConsumedRecord) -> str | None:
    """The ``mesh-type`` header, routed on before paying for a decode."""
    for name, value in record.headers:
        if name == HEADER_TYPE:
            return value.decode(errors="replace")
    return None


class AgentView:
    """The registry and, with the gate, the allocations, folded record by record."""

    def __init__(self, mapper: Mapper, registry: Registry, *, gate: bool) -> None:
        self.mapper = mapper
        self.registry = registry
        self.gate = ResourceGate() if gate else None
        self.folded: dict[int, int] = {}
        """Per ``agents`` partition, the offset of the last record folded (the registry guard
        and the lifecycle wait on it)."""

    @property
    def channels(self) -> Sequence[str]:
        return (*CHANNELS, "resources") if self.gate is not None else CHANNELS

    @property
    def version(self) -> tuple[int, int]:
        """Changes whenever anything placement depends on changed."""
        return (self.registry.version, self.gate.version if self.gate is not None else 0)

    def fold(self, channel: str, record: ConsumedRecord) -> None:
        if channel == "agents":
            self._fold_registry(record)
            self.folded[record.partition] = record.offset
            return
        if channel == "resources":
            self._fold_resources(record)
            return
        if channel == "tasks.results" and _kind(record) not in _RESULTS_FOLDED:
            return  # started, progress, waiting: nothing the view counts (no decode needed)
        if record.value is None:
            if channel == "breakers" and record.key is not None:
                self.registry.on_breaker(record.key.decode(errors="replace"), None)
            return
        try:
            event = self.mapper.decode(record.value, record.headers)
        except EventError as exc:
            log.debug(  # its topic's owner dead-letters it (mesh.kafka.dlq.DLQ_OWNERS)
                "bad record skipped: its topic's owner dead-letters it",
                topic=record.topic,
                offset=record.offset,
                error=str(exc),
            )
            return
        if channel == "agents.heartbeats":
            if isinstance(event, AgentHeartbeat):
                self.registry.on_heartbeat(event)
        elif channel == "breakers":
            if isinstance(event, BreakerStateChanged) and record.key is not None:
                self.registry.on_breaker(record.key.decode(errors="replace"), event)
        else:
            self.registry.on_result(event)

    def _fold_registry(self, record: ConsumedRecord) -> None:
        key = record.key.decode(errors="replace") if record.key is not None else None
        position = (record.partition, record.offset)
        if record.value is None:
            self.registry.fold_registry(position, key, None)
            return
        try:
            event = self.mapper.decode(record.value, record.headers)
        except EventError as exc:
            self.registry.refuse(position, key, f"unreadable registration: {exc}")
            return
        self.registry.fold_registry(position, key, event)
        refusal = self.registry.refused.get(position)
        if refusal is not None:
            log.warning("registration refused", agent_id=key, reason=refusal.reason)

    def _fold_resources(self, record: ConsumedRecord) -> None:
        """Allocations for the gate; the allocator dead-letters what it cannot read."""
        assert self.gate is not None
        if record.value is None:
            if record.key is not None:
                self.gate.forget(record.key.decode(errors="replace"))
            return
        try:
            self.gate.fold(self.mapper.decode(record.value, record.headers))
        except EventError as exc:
            log.debug(
                "bad record skipped: its topic's owner dead-letters it",
                topic=record.topic,
                offset=record.offset,
                error=str(exc),
            )


__all__ = ["CHANNELS", "AgentView"]
