"""The one type of a record consumed from Kafka, as mesh code reads it.

aiokafka ships no type information, so its ``ConsumerRecord`` is ``Any`` to mypy and a parameter
typed with it checks nothing. :class:`ConsumedRecord` names the fields mesh reads — where the
record was (topic, partition, offset, timestamp) and what it holds (key, value, headers) — so
handlers, folders, readers and dead-lettering are typed alike, and a test double is any object
with these fields (a dataclass will do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mesh.events import KeyedRecord


class ConsumedRecord(KeyedRecord, Protocol):
    """A consumed record (aiokafka's ``ConsumerRecord`` fits); ``value`` is None for a tombstone.

    It extends :class:`mesh.events.KeyedRecord`, what the ``Mapper`` decodes, with where the
    record was read."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


__all__ = ["ConsumedRecord"]
