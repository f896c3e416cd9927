"""No record stalls a FastStream consumer: a poison record of each kind on ``requests`` (the
planner) and on ``calls`` (a call server) is dead-lettered exactly once with its reason, and the
valid record behind them on the same partition is processed.

The kinds: JSON nested 100,000 deep (FastStream's own decoder raised ``RecursionError`` on it and
redelivered it forever), a value that is not UTF-8, a 2 MB value, a schema version this build
does not read, a record with no key, and a mesh header that is not UTF-8 (FastStream's parser
used to fail on that before any decoder ran).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from mesh.events import (
    HEADER_SCHEMA_VERSION,
    HEADER_TYPE,
    ApiCall,
    DeadLetter,
    Event,
    Mapper,
    PlanCreated,
    PlanRejected,
    Reply,
    meta,
)
from mesh.kafka.calls import CallServer
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.settings import Settings
from tests.contract.brokers import Contract
from tests.contract.planner import (
    ME,
    everything_in,
    prepare,
    read_until,
    request,
    running,
)

MAPPER = Mapper()
WAIT = 60.0
PARTITION = 0
"""Every record of a test goes to this partition: the valid one waits behind the poison."""


@dataclass(frozen=True)
class Record:
    """One record as sent, and (for a poison) the dead letter it must get."""

    kind: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    error_class: str = ""
    reason: str = ""


def poisons(base: Event) -> list[Record]:
    """One poison record of each kind, made from the valid event ``base``."""
    key, value, headers = MAPPER.encode(base)
    data = json.loads(value)

    def changed(**fields: Any) -> bytes:
        return json.dumps({**data, **fields}).encode()

    def header(name: str, raw: bytes) -> list[tuple[str, bytes]]:
        return [(n, raw if n == name else v) for n, v in headers]

    deep = value[:-1] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    not_utf8 = value.replace(base.correlation_id.encode(), b"caf\xe9")
    return [
        Record("deep", key, deep, headers, "InvalidEvent", "nests objects and arrays over 64"),
        Record("utf8", key, not_utf8, headers, "InvalidEvent", "the value is not UTF-8 text"),
        Record(
            "2MB",
            key,
            changed(note="x" * 2_000_000),
            headers,
            "EventTooLarge",
            "over the limit of 1000000 bytes",
        ),
        Record(
            "version",
            key,
            changed(schema_version=99),
            header(HEADER_SCHEMA_VERSION, b"99"),
            "UnknownEventType",
            "v99 is newer than this build reads",
        ),
        Record("no key", None, value, headers, "InvalidEvent", "the record has no key"),
        Record(
            "header",
            key,
            value,
            header(HEADER_TYPE, b"\xffnope"),
            "InvalidEvent",
            "header mesh-type is not UTF-8 text",
        ),
    ]


def valid(event: Event) -> Record:
    key, value, headers = MAPPER.encode(event)
    return Record("valid", key, value, headers)


async def send(settings: Settings, channel: str, records: list[Record]) -> list[int]:
    """Send ``records`` in order to one partition of ``channel``; their offsets.

    Compressed, so that the 2 MB value fits a topic whose records are limited to 1 MiB on real
    Kafka (the limit applies to the compressed batch): it reaches the consumer whole.
    """
    producer = AIOKafkaProducer(
        **client_kwargs(settings),
        acks="all",
        compression_type="gzip",
        max_request_size=8 * 1024 * 1024,
    )
    offsets = []
    try:
        await producer.start()
        for r in records:
            sent = await producer.send_and_wait(
                settings.topic(channel), r.value, key=r.key, headers=r.headers, partition=PARTITION
            )
            offsets.append(sent.offset)
    finally:
        await stop_clients(producer)
    return offsets


async def assert_dead_lettered_once(
    settings: Settings, channel: str, records: list[Record], offsets: list[int]
) -> None:
    """Each poison record has exactly one dead letter, with its reason; nothing else has one."""
    letters = [e for e in await everything_in(settings, "dlq") if isinstance(e, DeadLetter)]
    by_offset = dict(zip(offsets, records, strict=True))
    got = sorted(letter.original_offset for letter in letters)
    assert got == sorted(o for o, r in by_offset.items() if r.kind != "valid"), letters
    for letter in letters:
        poison = by_offset[letter.original_offset]
        assert letter.original_topic == settings.topic(channel)
        assert letter.original_partition == PARTITION
        assert letter.error_class == poison.error_class, (poison.kind, letter.error_message)
        assert poison.reason in letter.error_message, (poison.kind, letter.error_message)
        assert letter.original_key == (poison.key.decode() if poison.key else None)


class PoisonRecordsContract(Contract):
    """FastStream consumers (the planner, a call server) get past every kind of poison record."""

    async def test_poison_requests_are_dead_lettered_once_and_the_request_behind_is_planned(
        self,
        settings: Settings,
    ) -> None:
        await prepare(settings)
        records = [*poisons(request("feature", "req-poison")), valid(request("feature", "req-ok"))]
        async with running(settings):
            offsets = await send(settings, "requests", records)
            plans = await read_until(
                settings,
                ["plans"],
                lambda seen: any(getattr(e, "request_id", "") == "req-ok" for _, e in seen),
            )
            await assert_dead_lettered_once(settings, "requests", records, offsets)
        outcomes = [e for _, e in plans if isinstance(e, PlanCreated | PlanRejected)]
        assert [(type(e), e.request_id) for e in outcomes] == [(PlanCreated, "req-ok")]

    async def test_poison_calls_are_dead_lettered_once_and_the_call_behind_is_answered(
        self,
        settings: Settings,
    ) -> None:
        await prepare(settings)

        async def echo(args: dict[str, Any]) -> Any:
            return args

        def call(correlation_id: str, n: int) -> ApiCall:
            return ApiCall(
                **meta(ME, correlation_id=correlation_id),
                component="task-planner",
                method="echo",
                args={"n": n},
                timeout_ms=600_000,  # however long the group takes to form, it is answered
            )

        server = CallServer(
            settings,
            "task-planner",
            {"echo": echo},
            me=ME,
            group_id=f"{settings.topic_prefix}calls",
        )
        stop = asyncio.Event()
        serving = asyncio.create_task(server.run(stop))
        try:
            records = [*poisons(call("call-poison", 0)), valid(call("call-ok", 1))]
            offsets = await send(settings, "calls", records)
            replies = await read_until(
                settings,
                ["replies"],
                lambda seen: any(e.correlation_id == "call-ok" for _, e in seen),
            )
            await assert_dead_lettered_once(settings, "calls", records, offsets)
        finally:
            stop.set()
            async with asyncio.timeout(WAIT):
                await serving
        assert [(e.correlation_id, e.ok, e.result) for _, e in replies if isinstance(e, Reply)] == [
            ("call-ok", True, {"n": 1})
        ]
        assert server.answered == 1
