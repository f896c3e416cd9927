"""What the allocator component publishes: ledger records, tombstones and dead letters.

Everything a step produces is collected here and sent together, then acknowledged, before the
input offsets that caused it are committed (at-least-once; the ledger's fold makes a repeat
harmless).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from mesh.events import HEADER_EVENT_ID, Event, Mapper, Producer
from mesh.kafka import ConsumedRecord
from mesh.kafka.connection import kafka_errors
from mesh.kafka.dlq import dead_letter
from mesh.kafka.faults import ack_seconds, acknowledged
from mesh.log import get_logger
from mesh.resources._api import COMPONENT
from mesh.settings import Settings

log = get_logger("mesh.resources")


@dataclass(frozen=True)
class _Record:
    topic: str
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]


class Outbox:
    """Records waiting to be sent, in order."""

    def __init__(self, settings: Settings, mapper: Mapper, producer: Producer) -> None:
        self.settings = settings
        self.mapper = mapper
        self.me = producer
        self._records: list[_Record] = []
        self._own: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._records)

    def event(self, event: Event) -> None:
        """A ledger record for ``resources``."""
        key, value, headers = self.mapper.encode(event)
        self._own.update(v for n, v in headers if n == HEADER_EVENT_ID)
        self._records.append(_Record(self.settings.topic("resources"), key, value, headers))

    def echo(self, record: ConsumedRecord) -> bool:
        """True (once) for a record of ``resources`` this outbox sent: it was folded into the
        ledger when it was made, so reading it back needs neither a decode nor a fold (and a
        request read back after its decision is no late duplicate, see ``Ledger.stale``)."""
        for name, value in record.headers:
            if name == HEADER_EVENT_ID and value in self._own:
                self._own.discard(value)
                return True
        return False

    def tombstone(self, key: str) -> None:
        """Forget a ledger key (compaction drops it and the tombstone after a while)."""
        self._records.append(_Record(self.settings.topic("resources"), key.encode(), None, []))

    def dead_letter(self, record: ConsumedRecord, error: BaseException) -> None:
        """A record this component gives up on, for ``dlq``."""
        letter = dead_letter(
            record,
            error,
            COMPONENT,
            producer=self.me,
            max_event_bytes=self.settings.max_event_bytes,
        )
        self._records.append(_Record(self.settings.topic("dlq"), *letter))

    async def flush(self, producer: AIOKafkaProducer) -> None:
        """Send everything and wait until the broker has acknowledged it all."""
        if not self._records:
            return
        out, self._records = self._records, []
        with kafka_errors(self.settings, "publish resource decisions"):
            sent = [
                await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in out
            ]
            await acknowledged(asyncio.gather(*sent), ack_seconds(self.settings.request_timeout_ms))
