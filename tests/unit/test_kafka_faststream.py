"""The mesh's FastStream router, in memory (TestKafkaBroker): the Mapper decodes, a record it
refuses is dead-lettered once and never reaches the handler, a handler decides what else is a
dead letter, and a broker fault is redelivered rather than dead-lettered.

The same behaviour on real brokers, poison record by poison record, is in
``tests/contract/poison.py`` (run on both brokers).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from structlog.testing import capture_logs

import mesh.kafka.faststream as faststream_module
from mesh.errors import BrokerUnavailable
from mesh.events import (
    DeadLetter,
    Event,
    Mapper,
    Producer,
    TaskRequest,
    meta,
)
from mesh.kafka.dlq import ConsumedRecord
from mesh.kafka.faststream import EventRouter, faststream_broker
from mesh.settings import Settings

SETTINGS = Settings(topic_prefix="unit.")
ME = Producer(component="unit", instance="u-1")
MAPPER = Mapper()


def request(request_id: str) -> TaskRequest:
    return TaskRequest(
        **meta(ME, correlation_id=request_id),
        request_id=request_id,
        task_type="feature",
        description="Add a flag",
    )


class App:
    """A router with one subscription on ``requests``, its handler's calls and the dead letters."""

    def __init__(
        self,
        group_id: str | None = "unit-group",
        component: str = "task-planner",  # the owner of requests' dead letters
        **options: Any,
    ) -> None:
        self.handled: list[tuple[Event, ConsumedRecord]] = []
        self.failure: Exception | None = None
        self.router = EventRouter(SETTINGS, component=component, me=ME)
        self.router.events("requests", group_id=group_id, **options)(self.handle)
        self.broker = faststream_broker(SETTINGS)
        self.broker.include_router(self.router)
        self.letters: list[Any] = []
        subscriber = self.broker.subscriber(SETTINGS.topic("dlq"))

        async def record(message: KafkaMessage) -> None:
            self.letters.append(message.raw_message)

        subscriber(record)

    async def handle(self, event: Event, record: ConsumedRecord) -> None:
        self.handled.append((event, record))
        if self.failure is not None:
            raise self.failure

    async def publish(self, value: bytes, key: bytes | None = b"k", **headers: str) -> None:
        await self.broker.publish(value, SETTINGS.topic("requests"), key=key, headers=headers)

    async def send(self, event: Event) -> None:
        key, value, headers = MAPPER.encode(event)
        await self.publish(value, key, **{n: v.decode() for n, v in headers})

    def dead_letters(self) -> list[DeadLetter]:
        letters = [MAPPER.decode(r.value, r.headers) for r in self.letters]
        return [letter for letter in letters if isinstance(letter, DeadLetter)]


@pytest.fixture
async def app() -> AsyncIterator[App]:
    running = App()
    async with TestKafkaBroker(running.broker):
        yield running


async def test_the_handler_gets_the_decoded_event_and_its_record(app: App) -> None:
    event = request("r-1")
    await app.send(event)
    ((got, record),) = app.handled
    assert got == event
    assert record.topic == "unit.requests"
    assert record.key == b"r-1"
    assert app.letters == []


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, b"k", "nests objects and arrays over 64 levels deep"),
        (b"caf\xe9", b"k", "the value is not UTF-8 text: byte 0xe9 at offset 3"),
        (b"not json", b"k", "the value is not valid JSON"),
        (b"x" * 1_000_001, b"k", "record is 1000001 bytes, over the limit"),
        (json.dumps({"type": "request.submitted", "schema_version": 9}).encode(), b"k", "v9"),
        # (A record with no key is refused too; TestKafkaBroker gives it b"", so that case is
        # in tests/contract/poison.py.)
    ],
)
async def test_a_record_the_mapper_refuses_is_dead_lettered_once_and_the_next_is_handled(
    app: App, value: bytes, key: bytes | None, reason: str
) -> None:
    await app.publish(value, key)
    await app.send(request("r-3"))
    (letter,) = app.dead_letters()
    assert reason in letter.error_message
    assert letter.component == "task-planner"
    assert letter.original_topic == "unit.requests"
    assert [event.correlation_id for event, _ in app.handled] == ["r-3"]


async def test_a_handler_failure_dead_letters_the_record_with_its_reason(app: App) -> None:
    app.failure = ValueError("cannot plan this")
    await app.send(request("r-4"))
    (letter,) = app.dead_letters()
    assert (letter.error_class, letter.error_message) == ("ValueError", "cannot plan this")


async def test_a_broker_fault_is_redelivered_not_dead_lettered(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faststream_module, "_RETRY_FIRST", 0.0)
    app.failure = BrokerUnavailable("no Kafka broker answered")
    with capture_logs() as logs:
        await app.send(request("r-5"))
    assert app.letters == []
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "records to be redelivered"
    ]


async def test_a_failing_after_step_has_the_batch_redelivered_not_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in what runs after the handlers (e.g. a flush) is no record's fault: nothing is
    committed or dead-lettered, and the retry is paced (one warning, not a storm)."""
    monkeypatch.setattr(faststream_module, "_RETRY_FIRST", 0.0)

    async def broken() -> None:
        raise RuntimeError("flush bug")

    running = App(batch=10, after=broken)
    async with TestKafkaBroker(running.broker):
        with capture_logs() as logs:
            await running.send(request("r-7"))
    assert running.letters == []
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert warning["event"] == "records to be redelivered"
    assert warning["error"] == "RuntimeError: flush bug"


async def test_a_topic_owned_elsewhere_hands_refused_records_to_its_hook() -> None:
    skipped: list[tuple[int, str]] = []

    async def unreadable(record: ConsumedRecord, error: Exception) -> None:
        skipped.append((record.offset, type(error).__name__))

    running = App(group_id=None, unreadable=unreadable)
    async with TestKafkaBroker(running.broker):
        await running.publish(b"{}")
    assert [name for _, name in skipped] == ["InvalidEvent"]
    assert running.letters == []
    assert running.handled == []


async def test_a_component_that_does_not_own_the_topic_skips_a_refused_record() -> None:
    """Only the topic's owner dead-letters (one dead letter per bad record); another reader
    says so at DEBUG and goes on to the next record."""
    running = App(component="resource-allocator")
    async with TestKafkaBroker(running.broker):
        with capture_logs() as logs:
            await running.publish(b"caf\xe9")
            await running.send(request("r-8"))
    assert running.letters == []
    assert [e.correlation_id for e, _ in running.handled] == ["r-8"]
    (skip,) = [e for e in logs if e["event"].startswith("bad record skipped")]
    assert skip["log_level"] == "debug"
    assert (skip["component"], skip["topic"]) == ("resource-allocator", "unit.requests")


async def test_a_batch_is_handled_record_by_record_then_after_once() -> None:
    flushed: list[int] = []
    running: App

    async def after() -> None:
        flushed.append(len(running.handled))

    running = App(batch=10, after=after)
    async with TestKafkaBroker(running.broker):
        await running.send(request("r-6"))
        await running.publish(b"junk")
    assert [e.correlation_id for e, _ in running.handled] == ["r-6"]
    assert flushed == [1, 1]  # one batch per publish here: after each, before the commit
    assert len(running.dead_letters()) == 1
