"""The payload store on ``payloads``: write a large value in chunks, read it back checked.

:meth:`PayloadStore.records` gives the chunk records of a value for a producer to send in its own
transaction (a reference then never points at an aborted payload: readers are read_committed);
:meth:`PayloadStore.put` sends them and waits for them, for producers without transactions, and
returns the reference with the partition and offset of the first chunk, so a reader seeks there
instead of scanning the partition. :meth:`PayloadStore.resolve` replaces every reference inside
a JSON value by the value it stands for, or raises ``PayloadMissing`` / ``PayloadCorrupt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any, TypeVar, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from mesh.errors import EventError, PayloadCorrupt, PayloadMissing
from mesh.events import (
    Event,
    ExecutionPlan,
    Mapper,
    PayloadChunk,
    PayloadRef,
    PlanCreated,
    Producer,
    WorkflowStarted,
    encode_piece,
    join_payload,
    meta,
    payload_digest,
    payload_refs_in,
    split_payload,
    substitute_payloads,
    uuid7,
    validation_message,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import kafka_errors
from mesh.kafka.partitions import partition_for, partitions_of
from mesh.kafka.produce import Outgoing, send_all, wait_all
from mesh.kafka.reader import bounds, read_range, reader
from mesh.kafka.records import ConsumedRecord
from mesh.settings import Settings

CHANNEL = "payloads"

E = TypeVar("E", bound=Event)

_PLANS_KEPT = 4
"""Plans by reference a store keeps once read (a reader meets the same one again and again)."""

_ENVELOPE_BYTES = 2_048
"""Room in a chunk record for everything but its data (ids, times, names)."""


class PayloadStore:
    """Writes and reads payloads for one process; call :meth:`close` when done."""

    def __init__(self, settings: Settings, mapper: Mapper, me: Producer) -> None:
        self.settings = settings
        self.mapper = mapper
        self.me = me
        self._reader: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._plans: dict[str, ExecutionPlan] = {}

    @property
    def threshold(self) -> int:
        return self.settings.payload_threshold_bytes

    @property
    def chunk_bytes(self) -> int:
        """Raw bytes per chunk: base64 makes 4 of 3, and the record must stay under the limit."""
        room = (self.mapper.max_event_bytes - _ENVELOPE_BYTES) * 3 // 4
        return max(1, min(self.settings.payload_chunk_bytes, room))

    def records(self, data: bytes, *, correlation_id: str) -> tuple[PayloadRef, list[Outgoing]]:
        """The reference to ``data`` (without its position) and the chunk records to send."""
        payload_id = uuid7().hex
        pieces = split_payload(data, self.chunk_bytes)
        outgoing = [
            Outgoing.of(
                CHANNEL,
                self.mapper.encode(
                    PayloadChunk(
                        **meta(self.me, correlation_id=correlation_id),
                        payload_id=payload_id,
                        index=index,
                        count=len(pieces),
                        data=encode_piece(piece),
                    )
                ),
            )
            for index, piece in enumerate(pieces)
        ]
        ref = PayloadRef(
            payload_id=payload_id, size=len(data), sha256=payload_digest(data), chunks=len(pieces)
        )
        return ref, outgoing

    async def put(
        self, producer: AIOKafkaProducer, data: bytes, *, correlation_id: str
    ) -> PayloadRef:
        """Store ``data`` and wait until every chunk is acknowledged; its reference."""
        ref, outgoing = self.records(data, correlation_id=correlation_id)
        sent = await wait_all(await send_all(producer, self.settings.topic, outgoing))
        first = sent[0]
        return ref.model_copy(update={"partition": first.partition, "offset": first.offset})

    async def put_json(
        self, producer: AIOKafkaProducer, value: Any, *, correlation_id: str
    ) -> PayloadRef:
        return await self.put(producer, dumps(value), correlation_id=correlation_id)

    async def get(self, ref: PayloadRef) -> bytes:
        """The payload's bytes, checked against ``ref``."""
        return join_payload(ref, await self._read(ref))

    async def chunks(self, ref: PayloadRef) -> list[PayloadChunk]:
        """The chunk records of ``ref`` as stored, in order, once checked (what
        ``mesh replay --export`` writes beside the history)."""
        found = await self._read(ref)
        join_payload(ref, found)  # raises PayloadMissing / PayloadCorrupt
        return [found[i] for i in range(ref.chunks)]

    async def _read(self, ref: PayloadRef) -> dict[int, PayloadChunk]:
        async with self._lock:
            consumer = await self._consumer()
            if ref.partition is not None:
                partition = ref.partition
            else:
                partition = partition_for(
                    ref.payload_id, await partitions_of(consumer, self.settings, CHANNEL)
                )
            tp = TopicPartition(self.settings.topic(CHANNEL), partition)
            limits = (await bounds(consumer, self.settings, [tp]))[tp]
            start = ref.offset if ref.offset is not None else limits[0]
            if start < limits[0]:
                raise PayloadMissing(
                    f"payload {ref.payload_id} was removed by the payload topic's retention "
                    f"(offset {start} is before the log start {limits[0]})",
                    payload_id=ref.payload_id,
                )
            return await self._chunks(consumer, tp, ref, start, limits)

    async def resolve(self, value: Any) -> Any:
        """``value`` with every payload reference inside it replaced by the JSON value it
        stands for (each fetched once and checked)."""
        found: dict[str, Any] = {}
        for ref in payload_refs_in(value):
            if ref.payload_id not in found:
                data = await self.get(ref)
                try:
                    found[ref.payload_id] = json.loads(data)
                except ValueError as exc:
                    raise PayloadCorrupt(
                        f"payload {ref.payload_id} is not JSON ({exc})", payload_id=ref.payload_id
                    ) from exc
        return substitute_payloads(value, found) if found else value

    async def plan(self, ref: PayloadRef) -> ExecutionPlan:
        """The plan stored at ``ref``, checked (digest, then the model)."""
        kept = self._plans.get(ref.payload_id)
        if kept is not None:
            return kept
        data = await self.get(ref)
        try:
            plan = ExecutionPlan.model_validate_json(data)
        except ValidationError as exc:
            raise PayloadCorrupt(
                f"payload {ref.payload_id} is not a valid plan: "
                f"{validation_message(exc, ExecutionPlan)}",
                payload_id=ref.payload_id,
            ) from exc
        if len(self._plans) >= _PLANS_KEPT:
            del self._plans[next(iter(self._plans))]
        self._plans[ref.payload_id] = plan
        return plan

    async def with_plan(self, event: E) -> E:
        """``event`` with its plan fetched if it is a plan or a workflow start by reference;
        any other event as it is."""
        if (
            isinstance(event, PlanCreated | WorkflowStarted)
            and event.plan is None
            and event.plan_ref is not None
        ):
            plan = await self.plan(event.plan_ref)
            return cast(E, event.model_copy(update={"plan": plan}))
        return event

    async def put_plan(
        self, producer: AIOKafkaProducer, plan: ExecutionPlan, *, correlation_id: str
    ) -> PayloadRef | None:
        """Store ``plan`` if its JSON is over the threshold (its reference), else None."""
        data = plan.model_dump_json().encode()
        if len(data) <= self.threshold:
            return None
        return await self.put(producer, data, correlation_id=correlation_id)

    async def close(self) -> None:
        consumer, self._reader = self._reader, None
        await stop_clients(consumer)

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            consumer = reader(self.settings)
            with kafka_errors(self.settings, "connect the payload reader"):
                await consumer.start()
            self._reader = consumer
        return self._reader

    async def _chunks(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        ref: PayloadRef,
        start: int,
        limits: tuple[int, int],
    ) -> dict[int, PayloadChunk]:
        key = ref.payload_id.encode()
        chunks: dict[int, PayloadChunk] = {}
        ranged = cast(
            AsyncGenerator[list[ConsumedRecord], None],
            read_range(consumer, self.settings, tp, start, limits),
        )
        async with contextlib.aclosing(ranged) as batches:
            async for batch in batches:
                for record in batch:
                    if record.key != key:
                        continue
                    try:
                        chunk = self.mapper.decode_record(record)
                    except EventError as exc:
                        raise PayloadCorrupt(
                            f"payload {ref.payload_id}: a chunk at offset {record.offset} "
                            f"cannot be read ({exc})",
                            payload_id=ref.payload_id,
                        ) from exc
                    if isinstance(chunk, PayloadChunk):
                        chunks.setdefault(chunk.index, chunk)
                if len(chunks) >= ref.chunks and all(i in chunks for i in range(ref.chunks)):
                    break
        return chunks


_READER = Producer(component="reader", instance="payloads")


async def with_plan(settings: Settings, mapper: Mapper, event: E) -> E:
    """``event`` with its plan fetched when it is a plan or workflow start by reference (a
    reader of its own, for the readers of history that meet one now and then)."""
    if not isinstance(event, PlanCreated | WorkflowStarted) or event.plan is not None:
        return event
    store = PayloadStore(settings, mapper, _READER)
    try:
        return await store.with_plan(event)
    finally:
        await store.close()


async def chunks_for_export(
    settings: Settings, mapper: Mapper, refs: list[PayloadRef]
) -> tuple[list[PayloadChunk], list[str]]:
    """The stored chunks of ``refs`` (each payload once), and a note for each that cannot be
    read (it is then left out, and replaying the file says what is missing)."""
    store = PayloadStore(settings, mapper, _READER)
    found: list[PayloadChunk] = []
    notes: list[str] = []
    seen: set[str] = set()
    try:
        for ref in refs:
            if ref.payload_id in seen:
                continue
            seen.add(ref.payload_id)
            try:
                found.extend(await store.chunks(ref))
            except (PayloadMissing, PayloadCorrupt) as exc:
                notes.append(f"payload not exported: {exc}")
    finally:
        await store.close()
    return found, notes


def dumps(value: Any) -> bytes:
    """The payload bytes of a JSON value (compact UTF-8, as readers decode it)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


__all__ = ["CHANNEL", "PayloadStore", "chunks_for_export", "dumps", "with_plan"]
