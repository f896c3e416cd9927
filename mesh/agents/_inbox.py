"""An agent's inbox: the partition of ``tasks.assigned`` its id hashes to, and the offsets of it.

Delivery is at-least-once. ``tasks.assigned`` is keyed by agent id, so the agent computes the
partition its own id hashes to (the producer's murmur2 partitioner) and ``assign()``s just that
one, with the consumer group ``<prefix>agent.<id>`` holding its committed offset (under the
topic prefix, so the agent's ACLs stay within it). A record's offset is committed only after it
is fully handled, and only below the oldest unfinished record
(:class:`~mesh.agents._offsets.OffsetTracker`), so a crash re-runs attempts rather than losing
them (the Workflow Manager ignores the duplicate results). A fresh agent id starts at the end of
its partition, committed *before* the agent registers: nothing is addressed to it earlier, and
nothing after is skipped on a restart.

Records of other agents sharing the partition are stepped over; a record addressed to this agent
that is not a ``TaskAssigned`` or ``CancelTask`` for it is skipped: the Agent Manager owns the
topic's dead letters (:func:`assignment_problem` is the verdict both use).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from mesh.agents._offsets import OffsetTracker
from mesh.agents._outbox import Outbox
from mesh.errors import EventError, InvalidEvent
from mesh.events import CancelTask, Event, Producer, TaskAssigned
from mesh.kafka.connection import kafka_errors
from mesh.kafka.dlq import skipped
from mesh.kafka.partitions import partition_for, partitions_of
from mesh.kafka.records import ConsumedRecord
from mesh.log import get_logger
from mesh.observe import metrics
from mesh.settings import Settings

Delivery = tuple[int, TaskAssigned | CancelTask]
"""A record's offset and the event it addressed to this agent."""

_POLL_MS = 200

log = get_logger("mesh.agents.inbox")


def assignment_problem(key: bytes | None, event: Event) -> str | None:
    """Why ``event`` does not belong on ``tasks.assigned`` under ``key``; None if it does.

    Judged the same way by the agent (which acts on what passes) and by the Agent Manager's
    guard (which dead-letters what does not), so exactly one of them has the last word."""
    if not isinstance(event, TaskAssigned | CancelTask):
        return f"{event.type} does not belong on tasks.assigned"
    if key != event.agent_id.encode():
        shown = key.decode(errors="replace") if key is not None else None
        return f"keyed to {shown!r} but addressed to {event.agent_id!r}"
    if isinstance(event, TaskAssigned) and event.task is None:
        return "an assignment without its task (only the history leaves it out)"
    return None


class Inbox:
    """Reads this agent's assignments and commits what has been handled."""

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        outbox: Outbox,
        me: Producer,
        agent_id: str,
    ) -> None:
        self.settings = settings
        self.me = me
        self.agent_id = agent_id
        self._key = agent_id.encode()
        self._consumer = consumer
        self._group = settings.group(f"agent.{agent_id}")  # the worker's consumer group
        self._outbox = outbox
        self._commit_lock = asyncio.Lock()
        self._paused = False
        self._tp: TopicPartition | None = None
        self._tracker: OffsetTracker | None = None

    async def open(self) -> int:
        """Take this agent's partition from its committed offset (a fresh id: from the end,
        committed now); returns the partition. ``ConfigError`` if the topic does not exist."""
        consumer = self._consumer
        topic = self.settings.topic("tasks.assigned")
        partitions = await partitions_of(consumer, self.settings, "tasks.assigned")
        tp = TopicPartition(topic, partition_for(self.agent_id, partitions))
        consumer.assign([tp])
        with kafka_errors(self.settings, f"read the committed offset of {topic}"):
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_end(tp)
                committed = await consumer.position(tp)
                await consumer.commit({tp: committed})
            else:
                consumer.seek(tp, committed)
        self._tp = tp
        self._tracker = OffsetTracker(committed)
        metrics.watch(consumer, self._group)
        return int(tp.partition)

    async def fetch(self) -> list[Delivery]:
        """The next records addressed to this agent (waits up to a poll interval); whatever
        else was read is already handled (stepped over, or dead-lettered)."""
        tp, tracker = self._partition, self._offsets
        with kafka_errors(self.settings, "read assignments"):
            batch = await self._consumer.getmany(tp, timeout_ms=_POLL_MS)
        metrics.consumed(self._group, batch)
        deliveries: list[Delivery] = []
        for record in batch.get(tp, ()):
            tracker.taken(record.offset)
            event = await self._accept(record)
            if event is None:
                tracker.finished(record.offset)
            else:
                deliveries.append((record.offset, event))
        return deliveries

    async def _accept(self, record: ConsumedRecord) -> TaskAssigned | CancelTask | None:
        if record.key != self._key:
            return None  # another agent's, on the same partition
        try:
            event = self._outbox.mapper.decode(record.value, record.headers)
            problem = assignment_problem(record.key, event)
            if problem is not None:
                raise InvalidEvent(problem)
        except EventError as exc:
            skipped(self.me.component, record, exc)  # the Agent Manager dead-letters it
            return None
        assert isinstance(event, TaskAssigned | CancelTask)  # assignment_problem said so
        return event

    def throttle(self, crowded: bool) -> None:
        """Stop fetching while the agent has more work in hand than it wants, resume after."""
        if crowded and not self._paused:
            self._consumer.pause(self._partition)
        elif self._paused and not crowded:
            self._consumer.resume(self._partition)
        self._paused = crowded

    def finished(self, offset: int) -> None:
        """The record at ``offset`` is fully handled (its result, if any, was produced)."""
        self._offsets.finished(offset)

    async def release(self, offset: int) -> None:
        """``finished``, and commit at once (an attempt's result is on the broker)."""
        self.finished(offset)
        await self.commit()

    async def commit(self) -> None:
        """Commit below the oldest unfinished record; a failed commit is retried next time."""
        async with self._commit_lock:
            position = self._offsets.committable()
            if position is None:
                return
            try:
                await self._consumer.commit({self._partition: position})
            except KafkaError as exc:
                log.warning("offset commit failed; will retry", error=str(exc))
                return
            self._offsets.committed(position)

    @property
    def _partition(self) -> TopicPartition:
        assert self._tp is not None, "the inbox is not open"
        return self._tp

    @property
    def _offsets(self) -> OffsetTracker:
        assert self._tracker is not None, "the inbox is not open"
        return self._tracker


__all__ = ["Delivery", "Inbox"]
