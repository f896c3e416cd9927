"""Helpers for the ``mesh tail``, ``mesh dlq`` and ``mesh groups`` tests: topics, real records,
dead letters made the way components make them, and ``mesh`` runs under a test's settings."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mesh.events import Event, Mapper, Producer, TaskCompleted, TaskFailed, TaskStarted, meta
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.kafka.dlq import dead_letter
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics
from tests.helpers import Run, run_mesh

ROOT = Path(__file__).resolve().parents[1]
AGENT = Producer(component="agent", instance="inspect-tests")
MAPPER = Mapper()
WAIT = 60.0


async def create_topics(settings: Settings) -> None:
    """Every declared topic under the test's prefix, from topics/ (topics as code)."""
    await apply_topics(settings, load_topics(ROOT / "topics", prefix=settings.topic_prefix).topics)


def mesh(settings: Settings, *args: str, timeout: float = 120) -> Run:
    """``mesh ARGS`` as a subprocess against the test's broker and prefix."""
    env = {
        "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": settings.topic_prefix,
        "COLUMNS": "250",  # tables as wide as their text, so assertions see whole cells
    }
    return run_mesh(*args, env=env, timeout=timeout)


def ok_json(run: Run) -> Any:
    """The JSON document a successful run printed."""
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


def json_lines(run: Run) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def workflow_id() -> str:
    return f"wf-{uuid.uuid4().hex[:12]}"


def history(wid: str) -> list[Event]:
    """A small task history of one workflow: A runs and completes, B fails twice, then completes."""

    def head() -> dict[str, Any]:
        return {**meta(AGENT, correlation_id=wid), "workflow_id": wid, "agent_id": "a1"}

    failure: dict[str, Any] = {"error_kind": "exit_code", "retriable": True}
    return [
        TaskStarted(**head(), task_id="A", attempt=1),
        TaskCompleted(**head(), task_id="A", attempt=1),
        TaskFailed(**head(), task_id="B", attempt=1, message="boom", **failure),
        TaskFailed(**head(), task_id="B", attempt=2, message="boom again", **failure),
        TaskCompleted(**head(), task_id="B", attempt=3),
    ]


async def produce(
    settings: Settings,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
    *,
    timestamps: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """Send ``(key, value, headers)`` records (optionally with given timestamps); their
    ``(partition, offset)``."""
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    placed = []
    try:
        await producer.start()
        for index, (key, value, headers) in enumerate(records):
            stamp = timestamps[index] if timestamps is not None else None
            meta_ = await producer.send_and_wait(
                topic, value, key=key, headers=headers, timestamp_ms=stamp
            )
            placed.append((meta_.partition, meta_.offset))
    finally:
        await stop_clients(producer)
    return placed


async def produce_events(
    settings: Settings,
    topic: str,
    events: Sequence[Event],
    *,
    timestamps: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    return await produce(
        settings,
        topic,
        [(key, value, headers) for key, value, headers in map(MAPPER.encode, events)],
        timestamps=timestamps,
    )


@dataclass(frozen=True)
class Consumed:
    """A record read back, as dead_letter() needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int = 0


async def read_all(settings: Settings, topic: str, *, at_least: int = 0) -> list[Consumed]:
    """Every record of ``topic`` (all partitions), waiting until there are ``at_least``."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    found: dict[tuple[int, int], Consumed] = {}
    try:
        await consumer.start()
        partitions = sorted(
            (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic) or ()
        )
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + WAIT
        while True:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for r in records:
                    found[(r.partition, r.offset)] = Consumed(
                        r.topic, r.partition, r.offset, r.key, r.value, list(r.headers), r.timestamp
                    )
            if not batch and len(found) >= at_least:
                break
            assert time.monotonic() < deadline, f"only {len(found)} of {at_least} records"
    finally:
        await stop_clients(consumer)
    return [found[k] for k in sorted(found)]


async def make_dead_letters(
    settings: Settings, channel: str, events: Sequence[Event], *, component: str = "tests"
) -> list[Consumed]:
    """Publish ``events`` on ``channel``, read them back, and dead-letter each of them the way a
    component does (``mesh.kafka.dlq.dead_letter``); the originals as read."""
    topic = settings.topic(channel)
    await produce_events(settings, topic, events)
    originals = await read_all(settings, topic, at_least=len(events))
    letters = [
        tuple(dead_letter(r, ValueError(f"cannot process {r.offset}"), component))
        for r in originals
    ]
    await produce(settings, settings.topic("dlq"), letters)  # type: ignore[arg-type]
    return originals
