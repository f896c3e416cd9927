"""The Agent Manager's view, live: the pure :class:`~mesh.agentmanager.AgentView` fed by a
:class:`~mesh.kafka.reader.Follower` that reads its topics from the beginning with no consumer
group, so a replica rebuilds the whole view alone and every replica agrees on it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka import TopicPartition

from mesh.agentmanager._registry import Registry
from mesh.agentmanager._view import AgentView
from mesh.events import Mapper
from mesh.kafka.partitions import partition_for
from mesh.kafka.reader import Follower
from mesh.settings import Settings


def _instant(millis: int | None) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, UTC) if millis is not None else None


class View(AgentView):
    """The folded view, followed live; run :meth:`start`, then read ``registry`` and ``gate``."""

    def __init__(
        self, settings: Settings, mapper: Mapper, registry: Registry, *, gate: bool
    ) -> None:
        super().__init__(mapper, registry, gate=gate)
        self.follower = Follower(settings, self.channels, self.fold, what="read the agent registry")
        self._task: asyncio.Task[None] | None = None
        self._settings = settings
        self._beat_partitions: int | None = None
        registry.heard = self.heard

    def heard(self, agent_id: str) -> tuple[datetime | None, datetime | None]:
        """When the agent's heartbeats' partition has been readable without a gap since, and
        when it was last read (see :meth:`Follower.readable`)."""
        count = self.follower.partitions("agents.heartbeats")
        if not count:
            return None, None
        topic = self._settings.topic("agents.heartbeats")
        tp = TopicPartition(topic, partition_for(agent_id, count))
        since, until = self.follower.readable(tp)
        return _instant(since), _instant(until)

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


__all__ = ["View"]
