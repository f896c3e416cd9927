"""What every Agent Manager replica folds from Kafka: the registry, heartbeats, results, breakers
and, with the resource gate on, the allocations.

The topics are followed from their beginning with no consumer group (:class:`Follower`), so a
replica rebuilds the whole view alone and every replica agrees on it. A record that cannot be
read is skipped here with a warning: the one consumer that owns its topic dead-letters it (the
registry guard for ``agents``, the agent for ``tasks.assigned``, the Workflow Manager for
``tasks.results``, the allocator for ``resources``).
"""

from __future__ import annotations

import asyncio

from mesh.agentmanager._gate import ResourceGate
from mesh.agentmanager._registry import Registry
from mesh.errors import EventError
from mesh.events import AgentHeartbeat, BreakerStateChanged, Mapper
from mesh.kafka.reader import Follower
from mesh.kafka.records import ConsumedRecord
from mesh.log import get_logger
from mesh.settings import Settings

log = get_logger("mesh.agentmanager")

CHANNELS = ("agents", "agents.heartbeats", "tasks.results", "breakers")


class View:
    """The folded view; run :meth:`run` as a task, read ``registry`` and ``gate``."""

    def __init__(
        self, settings: Settings, mapper: Mapper, registry: Registry, *, gate: bool
    ) -> None:
        self.mapper = mapper
        self.registry = registry
        self.gate = ResourceGate() if gate else None
        channels = (*CHANNELS, "resources") if gate else CHANNELS
        self.follower = Follower(settings, channels, self.fold, what="read the agent registry")
        self.folded: dict[int, int] = {}
        """Per ``agents`` partition, the offset of the last record folded (the registry guard
        and the lifecycle wait on it)."""
        self._task: asyncio.Task[None] | None = None

    @property
    def version(self) -> tuple[int, int]:
        """Changes whenever anything placement depends on changed."""
        return (self.registry.version, self.gate.version if self.gate is not None else 0)

    @property
    def moved(self) -> asyncio.Event:
        """Set after every batch folded."""
        return self.follower.moved

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.follower.run())
        return self._task

    async def catch_up(self) -> None:
        """Until everything committed on the view's topics now is folded."""
        await self.follower.catch_up(self._task)

    def check(self) -> None:
        """Raise the follower's error if it died."""
        if self._task is not None and self._task.done():
            self._task.result()

    def fold(self, channel: str, record: ConsumedRecord) -> None:
        if channel == "agents":
            self._fold_registry(record)
            self.folded[record.partition] = record.offset
            return
        if channel == "resources":
            self._fold_resources(record)
            return
        if record.value is None:
            if channel == "breakers" and record.key is not None:
                self.registry.on_breaker(record.key.decode(errors="replace"), None)
            return
        try:
            event = self.mapper.decode(record.value, record.headers)
        except EventError as exc:
            log.warning(
                "unreadable record skipped",
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
            log.warning("unreadable resources record skipped", offset=record.offset, error=str(exc))

    async def folded_up_to(self, partition: int, offset: int) -> None:
        """Wait until the ``agents`` record at ``partition``/``offset`` is folded."""
        while self.folded.get(partition, -1) < offset:
            self.check()
            self.moved.clear()
            try:
                async with asyncio.timeout(1.0):
                    await self.moved.wait()
            except TimeoutError:
                continue


__all__ = ["CHANNELS", "View"]
