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

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.agents._outcome import Failure, Outcome, Success
from mesh.errors import EventError, GuardedCallFailed
from mesh.events import BreakerStateChanged, Mapper
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.partitions import partition_for
from mesh.log import get_logger
from mesh.settings import Settings

DEFAULT_FAIL_MAX = 5
DEFAULT_RESET_TIMEOUT = 30.0

NEVER_COUNTED = frozenset({"cancelled", "agent_stopping", "breaker_open"})
"""Failure kinds that are the mesh's own decisions, not the agent's failures."""

_MAX_REASON = 300
_POLL_MS = 200

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
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    key = name.encode()
    found: BreakerStateChanged | None = None
    try:
        with kafka_errors(settings, f"read the last state of breaker {name}"):
            await consumer.start()
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=_POLL_MS)
                for record in batch.get(tp, ()):
                    if record.key != key:
                        continue
                    if record.value is None:
                        found = None
                        continue
                    try:
                        event = mapper.decode(record.value, record.headers)
                    except EventError as exc:
                        log.warning("unreadable breaker record skipped", name=name, error=str(exc))
                        continue
                    if isinstance(event, BreakerStateChanged):
                        found = event
    finally:
        await stop_clients(consumer)
    return found


__all__ = [
    "DEFAULT_FAIL_MAX",
    "DEFAULT_RESET_TIMEOUT",
    "NEVER_COUNTED",
    "counted",
    "last_state",
    "refused",
]
