"""Each agent's circuit breaker: what counts against it, and its state on the ``breakers`` topic.

Every attempt an agent runs — the command, the HTTP call, the Python function — goes through the
agent's :class:`~mesh.breakers.AsyncBreaker`, named ``agent:<agent id>``. What counts is the
failure of the *agent*, not the task's own verdict:

====================================================  ==========================================
outcome                                               counts against the breaker
====================================================  ==========================================
success                                               no (resets the count; closes after a trial)
the runner says (``Failure.infrastructure``)          as it says
- HTTP 5xx, 408, 429, timeout, connection error       yes
- HTTP 4xx                                            no: the endpoint judged the task
- command exit 126/127, the agent's program missing   yes: the agent cannot run anything
- command exit code otherwise ("tests failed")        no: the task's own result
otherwise: a retriable failure                        yes (timeouts, exceptions, retriable
                                                      ``TaskError``)
otherwise: a non-retriable failure                    no (``TaskError`` by default, bad task)
cancellation, Kafka trouble, the breaker's own refusal  neither way
====================================================  ==========================================

The agent publishes every state change to ``breakers`` (compacted, keyed by breaker name); the
Agent Manager replicas fold it and route around an open breaker. A restarted agent resumes the
state last published under its name, so an open breaker is not forgotten by restarting.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aiokafka import TopicPartition

from mesh.agents._outbox import Outbox
from mesh.agents._outcome import Failure, Outcome, Success
from mesh.breakers import AsyncBreaker, ChangeListener, breaker_name
from mesh.errors import BrokerError, EventError, GuardedCallFailed
from mesh.events import BreakerStateChanged, Mapper, Producer
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import kafka_errors
from mesh.kafka.partitions import partition_for, partitions_of
from mesh.kafka.reader import read_range, reader
from mesh.log import get_logger
from mesh.observe import metrics
from mesh.settings import Settings

DEFAULT_FAIL_MAX = 5
DEFAULT_RESET_TIMEOUT = 30.0

NEVER_COUNTED = frozenset({"cancelled", "agent_stopping", "breaker_open"})
"""Failure kinds that are the mesh's own decisions, not the agent's failures."""

_MAX_REASON = 300
_RETRY_SECONDS = 1.0
_FLUSH_SECONDS = 10.0

log = get_logger("mesh.agents.breaker")


def counted(outcome: Outcome) -> GuardedCallFailed | None:
    """The failure to count against the agent's breaker, or None (see the module table)."""
    if isinstance(outcome, Success) or outcome.kind in NEVER_COUNTED:
        return None
    counts = outcome.infrastructure
    if counts is None:
        counts = outcome.retriable
    if not counts:
        return None
    return GuardedCallFailed(f"{outcome.kind}: {outcome.message[:_MAX_REASON]}", kind=outcome.kind)


def refused(message: str) -> Failure:
    """The outcome of an attempt the breaker did not let through (retriable: elsewhere, later)."""
    return Failure("breaker_open", f"{message}; the attempt was not run", retriable=True)


async def last_state(
    settings: Settings, name: str, partitions: list[int]
) -> BreakerStateChanged | None:
    """The last state published under ``name`` on ``breakers`` (None: none, or a tombstone).

    Reads the one partition the name hashes to, from the beginning to its current end; the topic
    is compacted, so that is about one record per breaker.
    """
    tp = TopicPartition(settings.topic("breakers"), partition_for(name, partitions))
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    key = name.encode()
    found: BreakerStateChanged | None = None
    consumer = reader(settings)
    try:
        with kafka_errors(settings, f"read the last state of breaker {name}"):
            await consumer.start()
        async for batch in read_range(consumer, settings, tp):
            for record in batch:
                if record.key != key:
                    continue
                if record.value is None:
                    found = None
                    continue
                try:
                    event = mapper.decode(record.value, record.headers)
                except EventError as exc:
                    log.debug(  # the Agent Manager owns the topic's dead letters
                        "bad record skipped: its topic's owner dead-letters it",
                        name=name,
                        error=str(exc),
                    )
                    continue
                if isinstance(event, BreakerStateChanged):
                    found = event
    finally:
        await stop_clients(consumer)
    return found


class AgentBreaker:
    """The agent's breaker and its record on ``breakers``: resumed on start, every state change
    published in order (retried until the broker has it), and a closed breaker's record removed
    on a graceful stop, so the compacted topic keeps only the breakers that matter."""

    def __init__(self, agent_id: str, me: Producer, *, fail_max: int, reset_timeout: float) -> None:
        self.breaker = AsyncBreaker(
            breaker_name(agent_id),
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            neutral=(BrokerError,),  # Kafka trouble says nothing about the agent's endpoint
            listeners=[ChangeListener(me, self._changed)],
        )
        self._changes: deque[BreakerStateChanged] = deque()
        self._moved = asyncio.Event()
        self._recorded = False
        self._agent_id = agent_id
        metrics.breaker_changed(agent_id, "closed")

    @property
    def name(self) -> str:
        return self.breaker.name

    async def restore(self, settings: Settings, client: Any) -> None:
        """Resume the state last published under this breaker's name (a restart); ``client``
        (a producer or consumer) looks up the partitions of ``breakers``."""
        partitions = await partitions_of(client, settings, "breakers")
        last = await last_state(settings, self.name, partitions)
        if last is None:
            return
        self._recorded = True
        self.breaker.restore(last.new_state, failures=last.failure_count, opened_at=last.opened_at)
        metrics.breaker_changed(self._agent_id, last.new_state)
        if last.new_state != "closed":
            log.warning(
                "circuit breaker resumed",
                breaker=self.name,
                state=last.new_state,
                opened_at=last.opened_at.isoformat() if last.opened_at else None,
            )

    def _changed(self, event: BreakerStateChanged) -> None:
        """pybreaker's listener, called inside the transition: log, and queue the event."""
        logged = log.warning if event.new_state == "open" else log.info
        logged(
            "circuit breaker state changed",
            breaker=event.name,
            old_state=event.old_state,
            new_state=event.new_state,
            failure_count=event.failure_count,
            reason=event.reason or None,
        )
        metrics.breaker_changed(self._agent_id, event.new_state)
        self._changes.append(event)
        self._moved.set()

    async def publish_changes(self, outbox: Outbox) -> None:
        """Publish state changes in order, each until the broker has it (runs until cancelled)."""
        while True:
            await self._moved.wait()
            self._moved.clear()
            while self._changes:
                try:
                    await outbox.publish(self._changes[0])
                except BrokerError as exc:
                    log.warning("breaker state not published; retrying", error=str(exc))
                    await asyncio.sleep(_RETRY_SECONDS)
                    continue
                self._changes.popleft()
                self._recorded = True

    async def flush(self, outbox: Outbox) -> None:
        """On shutdown: publish what is still queued (bounded, so a dead broker cannot hang it)."""
        try:
            async with asyncio.timeout(_FLUSH_SECONDS):
                while self._changes:
                    await outbox.publish(self._changes[0])
                    self._changes.popleft()
                    self._recorded = True
        except (TimeoutError, BrokerError) as exc:
            log.warning("breaker state not published on shutdown", error=str(exc))

    async def forget_if_closed(self, outbox: Outbox) -> None:
        """After a graceful stop: a closed breaker has nothing to remember, so its record goes."""
        if self._recorded and self.breaker.state == "closed":
            await outbox.remove("breakers", self.name)


__all__ = [
    "DEFAULT_FAIL_MAX",
    "DEFAULT_RESET_TIMEOUT",
    "NEVER_COUNTED",
    "AgentBreaker",
    "counted",
    "last_state",
    "refused",
]
