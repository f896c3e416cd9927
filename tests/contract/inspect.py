"""``mesh tail``, ``mesh dlq`` and ``mesh groups`` on a broker, with real records: where a tail
starts, and a group's lag and its reset. Its helpers (topics, real records, dead letters made the
way components make them, ``mesh`` runs under a case's settings) serve each tier's own cases.

Offsets by timestamp need a broker that looks them up (``broker.time_lookup``); without it,
``--from-time`` and ``groups reset --to-time`` say so in one line rather than start somewhere
wrong.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from mesh.events import Event, Mapper, Producer, TaskCompleted, TaskFailed, TaskStarted, meta
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.kafka.dlq import dead_letter
from mesh.kafka.partitions import partition_for
from mesh.settings import Settings
from mesh.times import format_time
from mesh.topics import apply_topics, load_topics
from tests.contract.brokers import Contract
from tests.e2e import ROOT
from tests.helpers import Run, assert_one_line_error, run_mesh

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


async def history_at(settings: Settings, old: int) -> tuple[str, TopicPartition]:
    """One workflow's five task events, one second apart from ``old``, on tasks.results."""
    await create_topics(settings)
    wid = workflow_id()
    topic = settings.topic("tasks.results")
    stamps = [old + i * 1_000 for i in range(5)]
    await produce_events(settings, topic, history(wid), timestamps=stamps)
    return wid, TopicPartition(topic, partition_for(wid, 6))


async def commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=group, enable_auto_commit=False)
    try:
        await consumer.start()
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await stop_clients(consumer)


async def committed(settings: Settings, group: str, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    try:
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await stop_clients(admin)
    return int(offsets[tp].offset)


class InspectContract(Contract):
    """Where ``mesh tail`` starts, and what ``mesh groups`` shows and resets."""

    async def test_tail_start_choices_and_errors(self, settings: Settings) -> None:
        """--from-offset starts there; --from-time starts at the first record at or after the
        time, given as epoch ms or ISO (after every record: nothing), or, on a broker that cannot
        look offsets up by time, is refused in one line; a missing topic or two starts are
        one-line errors."""
        old = int(time.time() * 1000) - 60_000
        wid, _tp = await history_at(settings, old)
        from_offset = mesh(
            settings, "tail", "tasks.results", "--workflow", wid, "--from-offset", "3",
            "--until-end", "--json",
        )  # fmt: skip
        assert [x["offset"] for x in json_lines(from_offset)] == [3, 4]

        if self.broker.time_lookup:
            for when in (str(old + 2_500), format_time(old + 2_500)):
                run = mesh(
                    settings, "tail", "tasks.results", "--workflow", wid, "--from-time", when,
                    "--until-end", "--json",
                )  # fmt: skip
                assert run.code == 0, run.stderr
                assert [x["offset"] for x in json_lines(run)] == [3, 4]
            after_all = mesh(
                settings, "tail", "tasks.results", "--from-time", str(old + 60_000), "--until-end"
            )
            assert after_all.code == 0, after_all.stderr
            assert after_all.stdout == ""
        else:
            by_time = mesh(
                settings, "tail", "tasks.results", "--from-time", str(old + 2_500), "--until-end"
            )
            line = assert_one_line_error(by_time)
            assert "offsets by timestamp" in line
            assert "embedded broker" in line

        assert "no topic 'nope'" in assert_one_line_error(mesh(settings, "tail", "nope"))
        both = mesh(settings, "tail", "dlq", "--from-beginning", "--from-offset", "1")
        assert "choose one start" in assert_one_line_error(both)

    async def test_groups_lag_and_reset(self, settings: Settings) -> None:
        """``mesh groups`` shows committed, end and lag per component. A stopped component's
        group moves to the offsets of a time: --dry-run only prints them, the reset commits them
        (lag grows accordingly), after every record means the end; or, on a broker that cannot
        look offsets up by time, the reset is refused in one line. An unknown group and a group
        with members are refused."""
        old = int(time.time() * 1000) - 60_000
        _wid, tp = await history_at(settings, old)
        group = settings.group("workflows")
        for component, offset in (("workflows", 2), ("planner", 5)):
            await commit(settings, settings.group(component), {tp: offset})

        shown = mesh(settings, "groups", "--json")
        assert shown.code == 0, shown.stderr
        groups = {g["component"]: g for g in json.loads(shown.stdout)["groups"]}
        workflows = groups["workflows"]
        assert workflows["partitions"] == [
            {"topic": tp.topic, "partition": tp.partition, "committed": 2, "end": 5, "lag": 3}
        ]
        assert workflows["members"] == []
        assert groups["planner"]["lag"] == 0
        assert "workflows" in mesh(settings, "groups").stdout
        unknown = mesh(settings, "groups", "reset", "nobody", "--to-time", "-1h")
        assert "no consumer group" in assert_one_line_error(unknown)

        reset = ("groups", "reset", "workflows", "--to-time", str(old + 2_500), "--json")
        if self.broker.time_lookup:
            await commit(settings, group, {tp: 5})
            dry = ok_json(mesh(settings, *reset, "--dry-run"))
            assert dry["applied"] is False
            moves = {"current": 5, "target": 3, "change": -2}
            assert dry["partitions"] == [{"topic": tp.topic, "partition": tp.partition, **moves}]
            assert await committed(settings, group, tp) == 5

            done = ok_json(mesh(settings, *reset))
            assert done["applied"] is True
            assert await committed(settings, group, tp) == 3
            groups_now = ok_json(mesh(settings, "groups", "--json"))["groups"]
            assert [g["lag"] for g in groups_now if g["component"] == "workflows"] == [2]
            text = mesh(settings, "groups", "reset", "workflows", "--to-time", str(old + 60_000))
            assert text.code == 0, text.stderr
            assert "+2" in text.stdout  # after every record: the end
            assert await committed(settings, group, tp) == 5
        else:
            # After every record: Apache Kafka answers "the end"; this broker answers offset 0.
            future = str(int(time.time() * 1000) + 3_600_000)
            no_time = mesh(settings, "groups", "reset", "workflows", "--to-time", future)
            assert "offsets by timestamp" in assert_one_line_error(no_time)

        member = AIOKafkaConsumer(tp.topic, **client_kwargs(settings), group_id=group)
        try:
            await member.start()
            deadline = time.monotonic() + WAIT
            while not member.assignment():
                assert time.monotonic() < deadline, "never joined the group"
                await member.getmany(timeout_ms=200)
            busy = mesh(settings, *reset)
            assert "active member" in assert_one_line_error(busy)
        finally:
            await stop_clients(member)
        if self.broker.time_lookup:
            assert await committed(settings, group, tp) == 5

    async def test_redrive_sends_each_original_record_once(self, settings: Settings) -> None:
        """Two dead letters of one original record (two consumers gave up on it) re-send it
        once; a dead letter that arrives for an original already redriven re-sends nothing; the
        redriven copies name their origin in ``mesh-redriven-origin``."""
        await create_topics(settings)
        results = settings.topic("tasks.results")
        events = history(workflow_id())[1:3]
        originals = await make_dead_letters(settings, "tasks.results", events)
        twice = originals[0]
        again = dead_letter(twice, ValueError("cannot process it either"), "other-component")
        await produce(settings, settings.topic("dlq"), [tuple(again)])  # type: ignore[list-item]

        first = ok_json(mesh(settings, "dlq", "redrive", "--json"))
        assert (first["matched"], first["redriven"], first["already_redriven"]) == (3, 2, 1)
        copies = await read_all(settings, results, at_least=4)
        origins = [
            value.decode()
            for r in copies
            for name, value in r.headers
            if name == "mesh-redriven-origin"
        ]
        assert sorted(origins) == sorted(f"{results}/{r.partition}/{r.offset}" for r in originals)

        late = dead_letter(originals[1], ValueError("a late consumer gave up too"), "late")
        await produce(settings, settings.topic("dlq"), [tuple(late)])  # type: ignore[list-item]
        second = ok_json(mesh(settings, "dlq", "redrive", "--json"))
        assert (second["matched"], second["redriven"], second["already_redriven"]) == (4, 0, 4)
        assert len(await read_all(settings, results, at_least=4)) == 4
        listed = ok_json(mesh(settings, "dlq", "list", "--json"))["letters"]
        assert [x["redriven"] for x in listed if x["dead_letter"]] == [True] * 4
