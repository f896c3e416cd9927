"""Dead letters: turn a record a component cannot process into a ``DeadLetter`` record for ``dlq``.

Every consumer in the mesh (Agent Manager, agents, Workflow Manager …) gives up on a record the same
way, so an operator finds the same fields everywhere: the original topic, partition and offset,
the error class and message, and the component, both in the event and as headers (readable with
kcat without decoding). The dead letter is keyed by the original key, like DESIGN.md's table says,
and carries the original value (base64) when it fits under the size limit.

Producing the record is the caller's job, so that it can go into the caller's transaction;
making one logs it, once, in the same words everywhere.

Each bad origin record gets exactly one dead letter: :data:`DLQ_OWNERS` names the one component
that dead-letters the bad records of each input topic; every other consumer of the topic skips
them with a DEBUG line (:func:`owns`), so a redrive does not re-send one record several times.
"""

from __future__ import annotations

import base64
import os
import re
import socket
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from uuid import UUID

from mesh.errors import EventTooLarge
from mesh.events import (
    CHANNELS,
    DEFAULT_MAX_EVENT_BYTES,
    HEADER_CORRELATION_ID,
    HEADER_EVENT_ID,
    DeadLetter,
    Encoded,
    Mapper,
    Producer,
    meta,
)
from mesh.kafka.records import ConsumedRecord  # still importable here, where it was first
from mesh.log import get_logger
from mesh.observe import metrics
from mesh.settings import Settings

log = get_logger("mesh.dlq")

HEADER_ORIGINAL_TOPIC = "mesh-dlq-original-topic"
HEADER_ORIGINAL_PARTITION = "mesh-dlq-original-partition"
HEADER_ORIGINAL_OFFSET = "mesh-dlq-original-offset"
HEADER_ERROR_CLASS = "mesh-dlq-error-class"
HEADER_ERROR_MESSAGE = "mesh-dlq-error-message"
HEADER_COMPONENT = "mesh-dlq-component"
DLQ_HEADERS = (
    HEADER_ORIGINAL_TOPIC,
    HEADER_ORIGINAL_PARTITION,
    HEADER_ORIGINAL_OFFSET,
    HEADER_ERROR_CLASS,
    HEADER_ERROR_MESSAGE,
    HEADER_COMPONENT,
)
"""Headers every dead letter carries besides the mesh headers, in order."""

DLQ_OWNERS: Mapping[str, str] = MappingProxyType(
    {
        # The Workflow Manager's transactional inputs, and the API: it always runs.
        "plans": "workflow-manager",
        "commands": "workflow-manager",
        "tasks.results": "workflow-manager",
        "calls": "workflow-manager",
        "requests": "task-planner",
        # Read in a group by the allocator only (the planner follows it without one).
        "workflow.events": "resource-allocator",
        "resources": "resource-allocator",
        # The assignment loop, and the Agent Manager's guard groups: one group consumer per
        # topic, where the agents, the allocator and every replica's view read without one.
        "tasks.ready": "agent-manager",
        "tasks.assigned": "agent-manager",
        "agents": "agent-manager",
        "agents.heartbeats": "agent-manager",
        "agents.commands": "agent-manager",
        "breakers": "agent-manager",
    }
)
"""Input channel → the one component that dead-letters its bad records.

``workflow.state`` is not here: it is read only to rebuild, where an unreadable snapshot is
logged and the workflow folded from its history instead (nothing is consumed from it)."""


def tombstone(channel: str, record: ConsumedRecord) -> bool:
    """A keyed record without a value on a compacted channel: a deletion, not a bad record."""
    known = CHANNELS.get(channel)
    compacted = known is not None and known.cleanup == "compact"
    return compacted and record.value is None and record.key is not None


def channel_of(settings: Settings, topic: str) -> str:
    """The logical channel of a topic name (``mesh.tasks.ready`` → ``tasks.ready``)."""
    return topic.removeprefix(settings.topic_prefix)


def owns(component: str, channel: str) -> bool:
    """Whether ``component`` dead-letters the bad records of ``channel`` (others skip them)."""
    return DLQ_OWNERS.get(channel) == component


def skipped(component: str, record: ConsumedRecord, error: BaseException) -> None:
    """Say at DEBUG that a bad record was skipped by a consumer that does not own its topic."""
    log.debug(
        "bad record skipped: its topic's owner dead-letters it",
        component=component,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        error=_one_line(str(error) or type(error).__name__, _MAX_HEADER_MESSAGE_CHARS),
    )


_MAX_KEY_CHARS = 10_000
_MAX_HEADERS = 100
_MAX_HEADER_VALUE_CHARS = 2_000
_MAX_MESSAGE_CHARS = 10_000
_MAX_HEADER_MESSAGE_CHARS = 1_000
_ID_MAX = 200
_NAME_INVALID = re.compile(r"[^A-Za-z0-9_.:/@+-]")


def dead_letter(
    record: ConsumedRecord,
    error: BaseException,
    component: str,
    *,
    producer: Producer | None = None,
    attempts: int = 1,
    note: str = "",
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Encoded:
    """The ``(key, value, headers)`` of a dead letter for ``record``, ready to send to ``dlq``.

    ``component`` names who gave up (e.g. ``agent-manager``); ``producer`` defaults to that
    component on this host and process. The original value is left out (and the note says so)
    when the dead letter would otherwise exceed ``max_event_bytes``: it can still be read at its
    offset.
    """
    component_name = _name(component)
    me = producer or Producer(component=component_name, instance=_instance())
    headers = _text_headers(record.headers)
    error_class = _name(type(error).__name__)
    message = _one_line(str(error) or error_class, _MAX_MESSAGE_CHARS)
    envelope = meta(me, correlation_id=_correlation_id(record, headers))
    envelope["causation_id"] = _uuid(headers.get(HEADER_EVENT_ID))
    mapper = Mapper(max_event_bytes=max_event_bytes)

    def letter(value_base64: str | None, why: str) -> DeadLetter:
        return DeadLetter(
            **envelope,
            original_topic=record.topic,
            original_partition=record.partition,
            original_offset=record.offset,
            original_key=_text(record.key, _MAX_KEY_CHARS) if record.key is not None else None,
            original_headers=headers,
            original_value_base64=value_base64,
            error_class=error_class,
            error_message=message,
            component=component_name,
            attempts=attempts,
            note=_one_line(why, 2_000),
        )

    metrics.dead_lettered(component_name, error_class)
    log.warning(
        "record dead-lettered",
        component=component_name,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        error_class=error_class,
        error=message[:_MAX_HEADER_MESSAGE_CHARS],
    )
    value_b64 = base64.b64encode(record.value).decode() if record.value is not None else None
    try:
        encoded = mapper.encode(letter(value_b64, note))
    except EventTooLarge:
        omitted = "original value omitted: too large for a dead letter; read it at its offset"
        encoded = mapper.encode(letter(None, f"{note} {omitted}".strip()))
    extra = [
        (HEADER_ORIGINAL_TOPIC, record.topic.encode()),
        (HEADER_ORIGINAL_PARTITION, str(record.partition).encode()),
        (HEADER_ORIGINAL_OFFSET, str(record.offset).encode()),
        (HEADER_ERROR_CLASS, error_class.encode()),
        (HEADER_ERROR_MESSAGE, _one_line(message, _MAX_HEADER_MESSAGE_CHARS).encode()),
        (HEADER_COMPONENT, component_name.encode()),
    ]
    # Keyed by the original bytes (not their text form), so the dead letter lands where a
    # redrive keyed the same way expects it.
    key = record.key if record.key is not None else encoded.key
    return Encoded(key, encoded.value, [*encoded.headers, *extra])


def _text_headers(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, raw in headers or ():
        if len(found) >= _MAX_HEADERS and name not in found:
            break
        found[name] = _text(raw, _MAX_HEADER_VALUE_CHARS) if raw is not None else ""
    return found


def _correlation_id(record: ConsumedRecord, headers: dict[str, str]) -> str:
    """The original's correlation id when it has a usable one, else where it was read."""
    candidate = headers.get(HEADER_CORRELATION_ID, "")
    if 0 < len(candidate) <= _ID_MAX and not any(c.isspace() for c in candidate):
        return candidate
    return f"{record.topic}/{record.partition}/{record.offset}"[-_ID_MAX:]


def _uuid(text: str | None) -> UUID | None:
    if not text:
        return None
    try:
        return UUID(text)
    except ValueError:
        return None


def _text(raw: bytes, limit: int) -> str:
    return bytes(raw[: limit * 4]).decode("utf-8", errors="replace")[:limit]


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _name(text: str) -> str:
    cleaned = _NAME_INVALID.sub("_", text)[:100] or "unknown"
    return cleaned if cleaned[0] not in ".:/@+-" else f"_{cleaned[1:]}"


def _instance() -> str:
    host = "".join(socket.gethostname().split()) or "host"
    return f"{host}-{os.getpid()}"[-_ID_MAX:]


__all__ = [
    "DLQ_HEADERS",
    "DLQ_OWNERS",
    "ConsumedRecord",
    "channel_of",
    "dead_letter",
    "owns",
    "skipped",
    "tombstone",
]
