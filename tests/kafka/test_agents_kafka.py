"""The Agent Manager's assignment on real Apache Kafka, where it is transactional: every
TaskReady becomes exactly one TaskAssigned for read_committed readers, across a rebalance and a
restart; garbage becomes a DeadLetter inside the same transactions; a waiting task survives a
restart; and a real agent process runs what the Agent Manager assigns."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.agentmanager.runtime import AgentManager
from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    Capability,
    DeadLetter,
    Event,
    TaskAssigned,
    TaskCompleted,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.settings import Settings
from tests._agents_support import (
    TEST,
    WAIT,
    agent_process,
    create_topics,
    of_task,
    producer,
    publish,
    reader,
    spec,
    task_ready,
)
from tests.helpers import assert_one_line_error, run_mesh

PY = sys.executable


@pytest.fixture
async def settings(kafka_settings: Settings) -> Settings:
    await create_topics(kafka_settings)
    return kafka_settings


async def fake_agent(settings: Settings, agent_id: str, *capabilities: str) -> None:
    """Register an agent (and keep it live for the test) without running one."""
    async with producer(settings) as out:
        await publish(
            out,
            settings,
            "agents",
            AgentRegistered(
                **meta(TEST, correlation_id=agent_id),
                agent_id=agent_id,
                kind="command",
                capabilities=[Capability(name=c) for c in capabilities],
                max_concurrency=4,
            ),
        )
        await publish(
            out,
            settings,
            "agents.heartbeats",
            AgentHeartbeat(
                **meta(TEST, correlation_id=agent_id),
                agent_id=agent_id,
                health="healthy",
                running_tasks=0,
                load=0,
                interval_seconds=600,
            ),
        )


@contextlib.asynccontextmanager
async def dispatcher(settings: Settings, group: str) -> AsyncIterator[AgentManager]:
    """A running Agent Manager's assignment (auto-detecting transactions), stopped on exit."""
    instance = AgentManager(settings, group_id=group)
    stop = asyncio.Event()
    task = asyncio.create_task(instance.run(stop))
    try:
        yield instance
    finally:
        stop.set()
        async with asyncio.timeout(WAIT):
            await task


def assignments(events: list[Event]) -> Counter[str]:
    return Counter(e.task_id for e in events if isinstance(e, TaskAssigned))


def all_assigned(task_ids: list[str]) -> Callable[[list[Event]], bool]:
    return lambda events: set(task_ids) <= set(assignments(events))


async def committed_everything(settings: Settings, group: str) -> bool:
    """True if the group's committed offsets on tasks.ready reach the end of every partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        await consumer.start()
        topic = settings.topic("tasks.ready")
        async with producer(settings) as lookup:
            tps = [TopicPartition(topic, p) for p in await lookup.partitions_for(topic)]
        assert tps
        ends = await consumer.end_offsets(tps)
        return all([(await consumer.committed(tp) or 0) >= end for tp, end in ends.items()])
    finally:
        await stop_clients(consumer)


async def test_every_ready_task_is_assigned_exactly_once_across_rebalance_and_restart(
    settings: Settings,
) -> None:
    group = f"{settings.topic_prefix}dispatcher"
    await fake_agent(settings, "agent-a", "work")
    await fake_agent(settings, "agent-b", "work")
    first = [f"t{i}" for i in range(12)]
    second = [f"u{i}" for i in range(12)]

    async with (
        producer(settings) as out,
        reader(settings, "tasks.assigned") as assigned,
        reader(settings, "tasks.results") as results,
    ):
        async with dispatcher(settings, group) as one:
            for i, task_id in enumerate(first):
                await publish(
                    out, settings, "tasks.ready", task_ready(spec(task_id, "work"), f"wf{i}")
                )
            await assigned.until(all_assigned(first), what="the first tasks")
            assert one.transactional is True

            async with dispatcher(settings, group):  # a second replica: the group rebalances
                for i, task_id in enumerate(second):
                    await publish(
                        out, settings, "tasks.ready", task_ready(spec(task_id, "work"), f"wf{i}")
                    )
                await assigned.until(all_assigned(first + second), what="the second tasks")

        # A restarted dispatcher must not dispatch anything again: only the marker.
        async with dispatcher(settings, group):
            await publish(out, settings, "tasks.ready", task_ready(spec("marker", "work"), "wf-m"))
            to_agents = await assigned.until(all_assigned(["marker"]), what="the marker")
        to_manager = await results.until(
            all_assigned([*first, *second, "marker"]), what="the copies on tasks.results"
        )

    assert assignments(to_agents) == Counter(dict.fromkeys([*first, *second, "marker"], 1))
    assert assignments(to_manager) == assignments(to_agents)
    spread = Counter(e.agent_id for e in to_agents if isinstance(e, TaskAssigned))
    assert set(spread) == {"agent-a", "agent-b"}
    for _topic, key, event in assigned.seen:
        assert isinstance(event, TaskAssigned)
        assert key == event.agent_id.encode()
    for _topic, key, event in results.seen:
        assert isinstance(event, TaskAssigned)
        assert key == event.workflow_id.encode()
    assert await committed_everything(settings, group)


async def test_garbage_becomes_a_dead_letter_and_the_next_task_is_still_dispatched(
    settings: Settings,
) -> None:
    group = f"{settings.topic_prefix}dispatcher"
    await fake_agent(settings, "agent-a", "work")
    async with (
        producer(settings) as out,
        reader(settings, "dlq", "tasks.assigned") as seen,
        dispatcher(settings, group),
    ):
        await out.send_and_wait(settings.topic("tasks.ready"), b"\x00\xffgarbage", key=b"wf-g")
        await out.send_and_wait(
            settings.topic("tasks.ready"),
            b'{"type": "task.nonsense", "schema_version": 1}',
            key=b"wf-g",
        )
        await publish(out, settings, "tasks.ready", task_ready(spec("after", "work"), "wf-g"))
        events = await seen.until(
            lambda evs: (
                len([e for e in evs if isinstance(e, DeadLetter)]) == 2
                and all_assigned(["after"])(evs)
            ),
            what="two dead letters and the next assignment",
        )

    letters = [e for e in events if isinstance(e, DeadLetter)]
    assert {letter.error_class for letter in letters} == {"InvalidEvent", "UnknownEventType"}
    for letter in letters:
        assert letter.component == "agent-manager"
        assert letter.original_topic == settings.topic("tasks.ready")
        assert letter.original_key == "wf-g"
    dlq_records = [r for r in seen.raw if r.topic == settings.topic("dlq")]
    assert {dict(r.headers)["mesh-dlq-original-offset"].decode() for r in dlq_records} == {
        str(letter.original_offset) for letter in letters
    }
    assert assignments(events) == Counter({"after": 1})
    assert await committed_everything(settings, group)


async def test_a_waiting_task_survives_a_restart_and_is_dispatched_once(
    settings: Settings,
) -> None:
    """Nobody can run the task at first; its offset is not committed while it waits, so the next
    dispatcher re-reads it and assigns it once an agent with the capability registers."""
    group = f"{settings.topic_prefix}dispatcher"
    await fake_agent(settings, "agent-a", "work")
    async with producer(settings) as out, reader(settings, "tasks.assigned") as assigned:
        async with dispatcher(settings, group):
            await publish(out, settings, "tasks.ready", task_ready(spec("rare", "rare"), "wf-r"))
            await publish(out, settings, "tasks.ready", task_ready(spec("common", "work"), "wf-r"))
            await assigned.until(all_assigned(["common"]), what="the common task")
        assert not await committed_everything(settings, group)

        await fake_agent(settings, "agent-r", "rare")
        async with dispatcher(settings, group):
            events = await assigned.until(all_assigned(["rare"]), what="the rare task")
            [rare] = of_task(events, "rare", TaskAssigned)
            assert rare.agent_id == "agent-r"
            await publish(out, settings, "tasks.ready", task_ready(spec("end", "work"), "wf-r"))
            events = await assigned.until(all_assigned(["end"]), what="the last task")
    assert assignments(events) == Counter({"common": 1, "rare": 1, "end": 1})
    assert await committed_everything(settings, group)


async def test_a_real_agent_runs_what_the_transactional_dispatcher_assigns(
    settings: Settings, tmp_path: Path
) -> None:
    group = f"{settings.topic_prefix}dispatcher"
    args = ["--kind", "command", "--capability", "shell", "--allow-task-command"]
    with agent_process(settings, "shell-k", args, tmp_path) as agent:
        async with reader(settings, "agents") as registry:
            await registry.until(
                lambda evs: any(isinstance(e, AgentRegistered) for e in evs),
                what=f"the agent to register; its log:\n{agent.output()}",
            )
        async with (
            producer(settings) as out,
            reader(settings, "tasks.results") as results,
            dispatcher(settings, group),
        ):
            task = spec("K", "shell", command=[PY, "-c", "print('on kafka')"])
            await publish(out, settings, "tasks.ready", task_ready(task, "wf-k"))
            events = await results.until(
                lambda evs: bool(of_task(evs, "K", TaskCompleted)), what="the result of K"
            )
        [done] = of_task(events, "K", TaskCompleted)
        assert done.output["stdout"] == "on kafka\n"
        assert agent.stop() == 0, agent.output()


def test_an_agent_without_its_topics_says_to_apply_them(kafka_settings: Settings) -> None:
    """Real Kafka does not auto-create topics: the agent stops with one line that says what to do
    (the embedded broker would create the topic on the metadata request instead)."""
    env = {
        "MESH_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "MESH_REQUEST_TIMEOUT_MS": "2000",
    }
    args = ["agent", "run", "--kind", "command", "--id", "lonely", "--capability", "x"]
    line = assert_one_line_error(run_mesh(*args, env=env, timeout=120))
    assert f"topic {kafka_settings.topic('tasks.assigned')} does not exist" in line
    assert "mesh topics apply" in line
