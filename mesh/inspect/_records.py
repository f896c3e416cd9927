"""A consumed record as an operator sees it: the decoded event, or its bytes shown safely.

Tools that read topics for a human (``mesh tail``, ``mesh dlq``) meet anything a producer wrote:
mesh events, kcat experiments, garbage. Every record becomes a :class:`Seen` — decoded through the
one mapper when it is a mesh event, otherwise kept raw (a bounded copy, escaped when shown) with
the reason it is not an event — so printing and filtering never crash on foreign bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.errors import MeshError
from mesh.events import REGISTRY, Event, Mapper
from mesh.kafka import ConsumedRecord
from mesh.times import format_time

RAW_KEEP_BYTES = 4_096
"""How much of a value that is not an event is kept (and shown, escaped) per record."""

_HEADER_CHARS = 500
_KEY_CHARS = 500

RECORD_FIELDS = ("topic", "partition", "offset", "timestamp", "key", "headers", "raw")
"""Filter names every record has besides its event's fields (``raw`` is true when it is not an
event; ``decode_error`` then says why)."""

EVENT_FIELDS: frozenset[str] = frozenset(name for cls in REGISTRY for name in cls.model_fields)
"""Every field of every mesh event type (what a filter may name)."""

FILTER_NAMES: frozenset[str] = EVENT_FIELDS | frozenset(RECORD_FIELDS) | {"decode_error"}

EVENT_TYPES: frozenset[str] = frozenset(str(cls.model_fields["type"].default) for cls in REGISTRY)
"""Every event type (``task.failed`` …): values a filter compares with, quoted."""


@dataclass(frozen=True)
class Seen:
    """One record: where it is, its key and headers, and its event or (bounded) raw bytes."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: str | None
    headers: Mapping[str, str]
    value_size: int
    event: Event | None
    raw: bytes | None = None
    decode_error: str | None = None

    @property
    def position(self) -> str:
        """``partition:offset``, how a record is named on the command line."""
        return f"{self.partition}:{self.offset}"

    def fields(self) -> dict[str, Any]:
        """The names a filter expression can read (event fields, then the record's)."""
        data: dict[str, Any] = self.event.model_dump(mode="json") if self.event else {}
        data.update(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            timestamp=self.timestamp,
            key=self.key,
            headers=dict(self.headers),
            raw=self.event is None,
        )
        if self.decode_error is not None:
            data["decode_error"] = self.decode_error
        return data

    def as_json(self) -> dict[str, Any]:
        """One JSON line of ``mesh tail --json``."""
        data: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": format_time(self.timestamp) if self.timestamp >= 0 else None,
            "key": self.key,
        }
        if self.event is not None:
            data["type"] = self.event.type
            data["event"] = self.event.model_dump(mode="json")
        else:
            data["type"] = None
            data["raw"] = (
                escape(self.raw, RAW_KEEP_BYTES, total=self.value_size)
                if self.raw is not None
                else None
            )
            data["value_bytes"] = self.value_size
            data["decode_error"] = self.decode_error
            data["headers"] = dict(self.headers)
        return data


def see(record: ConsumedRecord, mapper: Mapper) -> Seen:
    """Decode ``record`` if it is a mesh event; keep a bounded raw copy if it is not."""
    value = record.value
    headers = {
        name: text(raw, _HEADER_CHARS) if raw is not None else ""
        for name, raw in list(record.headers or ())[:100]
    }
    key = text(record.key, _KEY_CHARS) if record.key is not None else None
    size = len(value) if value is not None else 0
    try:
        event = mapper.decode(value, record.headers)
    except MeshError as exc:
        kept = bytes(value[:RAW_KEEP_BYTES]) if value is not None else None
        return Seen(
            record.topic, record.partition, record.offset, record.timestamp, key, headers, size,
            None, kept, str(exc),
        )  # fmt: skip
    return Seen(
        record.topic, record.partition, record.offset, record.timestamp, key, headers, size, event
    )


def text(data: bytes, limit: int) -> str:
    """UTF-8 text of ``data`` (invalid bytes replaced), at most ``limit`` characters."""
    return bytes(data[: limit * 4]).decode("utf-8", errors="replace")[:limit]


def escape(data: bytes, limit: int, *, total: int | None = None) -> str:
    """Printable, one-line text of arbitrary bytes: UTF-8 shown as is, control characters and
    invalid bytes as escapes, cut at ``limit`` bytes with a marker saying how many were left
    (of ``total``, when ``data`` is already a cut copy of a longer value)."""
    shown = bytes(data[:limit]).decode("utf-8", errors="backslashreplace")
    escaped = "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in shown
    )
    size = max(len(data), total or 0)
    if size > min(limit, len(data)):
        escaped += f"…(+{size - min(limit, len(data))} bytes)"
    return escaped


__all__ = ["EVENT_FIELDS", "EVENT_TYPES", "FILTER_NAMES", "RECORD_FIELDS", "Seen", "escape", "see"]
