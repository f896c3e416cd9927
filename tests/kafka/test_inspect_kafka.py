"""``mesh tail --from-time``, ``mesh groups reset --to-time`` and a bulk ``mesh dlq redrive`` on
real Apache Kafka (offsets by timestamp work here), with real records and a real Workflow Manager.
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from mesh.events import WorkflowStarted
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.kafka.partitions import partition_for
from mesh.settings import Settings
from mesh.times import format_time
from mesh.workflows.runtime import WorkflowManager
from tests._inspect_support import (
    create_topics,
    history,
    json_lines,
    make_dead_letters,
    mesh,
    ok_json,
    produce_events,
    read_all,
    workflow_id,
)
from tests._wm_support import plan, reader, running, spec, unique_group
from tests.helpers import assert_one_line_error


async def _history_at(settings: Settings, old: int) -> tuple[str, TopicPartition]:
    """One workflow's five task events, one second apart from ``old``, on tasks.results."""
    await create_topics(settings)
    wid = workflow_id()
    topic = settings.topic("tasks.results")
    stamps = [old + i * 1_000 for i in range(5)]
    await produce_events(settings, topic, history(wid), timestamps=stamps)
    return wid, TopicPartition(topic, partition_for(wid, 6))


async def _commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=group, enable_auto_commit=False)
    try:
        await consumer.start()
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await stop_clients(consumer)


async def _committed(settings: Settings, group: str, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    try:
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await stop_clients(admin)
    return int(offsets[tp].offset)


async def test_tail_from_time(kafka_settings: Settings) -> None:
    """--from-time starts at the first record at or after the time, given as epoch ms or ISO."""
    old = int(time.time() * 1000) - 60_000
    wid, _tp = await _history_at(kafka_settings, old)
    for when in (str(old + 2_500), format_time(old + 2_500)):
        run = mesh(
            kafka_settings, "tail", "tasks.results", "--workflow", wid, "--from-time", when,
            "--until-end", "--json",
        )  # fmt: skip
        assert run.code == 0, run.stderr
        assert [x["offset"] for x in json_lines(run)] == [3, 4]
    after_all = mesh(
        kafka_settings, "tail", "tasks.results", "--from-time", str(old + 60_000), "--until-end"
    )
    assert after_all.code == 0, after_all.stderr
    assert after_all.stdout == ""


async def test_groups_reset_to_time(kafka_settings: Settings) -> None:
    """A stopped component's group moves to the offsets of a time: --dry-run only prints them,
    the reset commits them (lag grows accordingly), and a group with members is refused."""
    old = int(time.time() * 1000) - 60_000
    _wid, tp = await _history_at(kafka_settings, old)
    group = kafka_settings.group("workflows")
    await _commit(kafka_settings, group, {tp: 5})
    reset = ("groups", "reset", "workflows", "--to-time", str(old + 2_500), "--json")

    dry = ok_json(mesh(kafka_settings, *reset, "--dry-run"))
    assert dry["applied"] is False
    assert dry["partitions"] == [
        {"topic": tp.topic, "partition": tp.partition, "current": 5, "target": 3, "change": -2}
    ]
    assert await _committed(kafka_settings, group, tp) == 5

    done = ok_json(mesh(kafka_settings, *reset))
    assert done["applied"] is True
    assert await _committed(kafka_settings, group, tp) == 3
    groups = ok_json(mesh(kafka_settings, "groups", "--json"))["groups"]
    assert [g["lag"] for g in groups if g["component"] == "workflows"] == [2]
    text = mesh(kafka_settings, "groups", "reset", "workflows", "--to-time", str(old + 60_000))
    assert text.code == 0, text.stderr
    assert "+2" in text.stdout  # after every record: the end
    assert await _committed(kafka_settings, group, tp) == 5

    member = AIOKafkaConsumer(tp.topic, **client_kwargs(kafka_settings), group_id=group)
    try:
        await member.start()
        deadline = time.monotonic() + 60
        while not member.assignment():
            assert time.monotonic() < deadline, "never joined the group"
            await member.getmany(timeout_ms=200)
        busy = mesh(kafka_settings, *reset)
        assert "active member" in assert_one_line_error(busy)
    finally:
        await stop_clients(member)
    assert await _committed(kafka_settings, group, tp) == 5


async def test_hundred_dead_letters_redriven_are_processed(kafka_settings: Settings) -> None:
    """100 plans the Workflow Manager gave up on go back to the plans topic in one redrive, and
    with the manager running they start their workflows; a second redrive sends nothing."""
    await create_topics(kafka_settings)
    plans = [plan(spec("A")) for _ in range(100)]
    originals = await make_dead_letters(
        kafka_settings, "plans", plans, component="workflow-manager"
    )
    assert len(originals) == 100
    # The manager consumed the originals already (and dead-lettered them): its group is at the end.
    group = unique_group()
    ends = {TopicPartition(r.topic, r.partition): 0 for r in originals}
    for record in originals:
        tp = TopicPartition(record.topic, record.partition)
        ends[tp] = max(ends[tp], record.offset + 1)
    await _commit(kafka_settings, group, ends)

    dry = ok_json(mesh(kafka_settings, "dlq", "redrive", "--dry-run", "--json"))
    assert dry["redriven"] == 100
    first = ok_json(mesh(kafka_settings, "dlq", "redrive", "--json"))
    assert first["redriven"] == 100
    assert first["by_topic"] == {kafka_settings.topic("plans"): 100}
    assert ok_json(mesh(kafka_settings, "dlq", "redrive", "--json"))["redriven"] == 0
    on_plans = await read_all(kafka_settings, kafka_settings.topic("plans"), at_least=200)
    assert len(on_plans) == 200

    wanted = {p.workflow_id for p in plans}
    manager = WorkflowManager(kafka_settings, group_id=group)
    async with running(manager), reader(kafka_settings, "workflow.events") as events:
        started = await events.until(
            lambda evs: {e.workflow_id for e in evs if isinstance(e, WorkflowStarted)} >= wanted,
            "100 workflows to start",
        )
    assert len([e for e in started if isinstance(e, WorkflowStarted)]) == 100
    # The history was written in transactions: tail reads past their markers to the end.
    tailed = mesh(
        kafka_settings, "tail", "workflow.events", "--from-beginning", "--until-end", "--json",
        "--filter", 'type == "workflow.started"',
    )  # fmt: skip
    assert tailed.code == 0, tailed.stderr
    assert {x["key"] for x in json_lines(tailed)} == wanted
    listed = ok_json(mesh(kafka_settings, "dlq", "list", "--json"))["letters"]
    assert len(listed) == 100
    assert all(x["redriven"] for x in listed)
