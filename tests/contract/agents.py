"""The Agent Manager and real ``mesh agent run`` processes on a broker: each task routed to an agent
with its capability, garbage dead-lettered without stopping assignment, and an agent that refuses
to start without its topics."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    Capability,
    DeadLetter,
    Event,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.settings import Settings
from tests._agents_support import (
    TEST,
    AgentProcess,
    agent_process,
    create_topics,
    of_task,
    producer,
    publish,
    reader,
    running_manager,
    spec,
    task_ready,
)
from tests.contract.brokers import Contract
from tests.helpers import assert_one_line_error, run_mesh

PY = sys.executable


async def registered(settings: Settings, *agents: AgentProcess) -> None:
    """Wait until every agent announced itself (and fail with its log if it died)."""
    ids = {agent.agent_id for agent in agents}
    async with reader(settings, "agents") as agents_topic:
        try:
            await agents_topic.until(
                lambda evs: ids <= {e.agent_id for e in evs if isinstance(e, AgentRegistered)},
                what=f"registration of {sorted(ids)}",
            )
        except AssertionError:
            logs = "\n".join(f"--- {a.agent_id}\n{a.output()}" for a in agents)
            raise AssertionError(f"agents did not register:\n{logs}") from None


def finished(task_id: str) -> Callable[[list[Event]], bool]:
    def done(events: list[Event]) -> bool:
        return bool(of_task(events, task_id, TaskCompleted) or of_task(events, task_id, TaskFailed))

    return done


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


class AgentsContract(Contract):
    """The Agent Manager assigns to real agent processes; an agent needs its topics."""

    @pytest.fixture
    async def settings(self, broker_settings: Settings) -> Settings:
        await create_topics(broker_settings)
        return broker_settings

    async def test_the_agent_manager_routes_each_task_to_the_agent_with_the_capability(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        """Two agents with different capabilities; each TaskReady reaches the capable one, which
        runs it, and a task nobody can run waits until an agent with its capability registers."""
        base = ["--kind", "command", "--allow-task-command", "--heartbeat-interval", "1"]
        hello = [PY, "-c", "import os; print(os.environ['MESH_AGENT_ID'])"]
        with (
            agent_process(settings, "alpha-1", [*base, "--capability", "alpha"], tmp_path) as alpha,
            agent_process(settings, "beta-1", [*base, "--capability", "beta"], tmp_path) as beta,
        ):
            await registered(settings, alpha, beta)
            async with (
                running_manager(settings, group_id=f"{settings.topic_prefix}agent-manager") as am,
                producer(settings) as out,
                reader(settings, "tasks.results") as results,
            ):
                for task in (spec("B", "beta", command=hello), spec("A", "alpha", command=hello)):
                    await publish(out, settings, "tasks.ready", task_ready(task))
                await publish(
                    out, settings, "tasks.ready", task_ready(spec("G", "gamma", command=hello))
                )
                events = await results.until(
                    lambda evs: finished("A")(evs) and finished("B")(evs),
                    what="results of A and B",
                )
                assert am.transactional is self.broker.transactional
                for task_id, agent_id in (("A", "alpha-1"), ("B", "beta-1")):
                    [assigned] = of_task(events, task_id, TaskAssigned)
                    [done] = of_task(events, task_id, TaskCompleted)
                    assert assigned.agent_id == done.agent_id == agent_id
                    assert done.output["stdout"] == f"{agent_id}\n"
                assert not of_task(events, "G", TaskAssigned)

                gamma_args = [*base, "--capability", "gamma"]
                with agent_process(settings, "gamma-1", gamma_args, tmp_path) as gamma:
                    events = await results.until(finished("G"), what="the waiting task G")
                    [done] = of_task(events, "G", TaskCompleted)
                    assert done.agent_id == "gamma-1"
                    assert gamma.stop() == 0, gamma.output()
            assert alpha.stop() == 0, alpha.output()
            assert beta.stop() == 0, beta.output()

    async def test_the_agent_manager_dead_letters_garbage_and_goes_on(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        """Bytes that are no event and an event of a type nobody knows, on ``tasks.ready``, each
        become one dead letter naming the Agent Manager, the original topic, key and offset; the
        task behind them is assigned once and a real agent runs it; and the group's committed
        offsets then cover all of it (with transactions, the letters go out in the same ones)."""
        group = f"{settings.topic_prefix}agent-manager"
        args = ["--kind", "python", "--module", "mesh.agents.demo", "--heartbeat-interval", "1"]
        with agent_process(settings, "py-d", args, tmp_path) as agent:
            await registered(settings, agent)
            async with (
                running_manager(settings, group_id=group),
                producer(settings) as out,
                reader(settings, "tasks.results", "dlq") as seen,
            ):
                ready = settings.topic("tasks.ready")
                await out.send_and_wait(ready, b"\x00\xffgarbage", key=b"wf-g")
                unknown = b'{"type": "task.nonsense", "schema_version": 1}'
                await out.send_and_wait(ready, unknown, key=b"wf-g")
                await publish(out, settings, "tasks.ready", task_ready(spec("N", "noop"), "wf-g"))
                events = await seen.until(
                    lambda evs: (
                        len([e for e in evs if isinstance(e, DeadLetter)]) == 2
                        and finished("N")(evs)
                    ),
                    what="two dead letters and the next task's result",
                )
            letters = [e for e in events if isinstance(e, DeadLetter)]
            assert {letter.error_class for letter in letters} == {
                "InvalidEvent",
                "UnknownEventType",
            }
            for letter in letters:
                assert letter.component == "agent-manager"
                assert letter.original_topic == settings.topic("tasks.ready")
                assert letter.original_key == "wf-g"
            dlq_records = [r for r in seen.raw if r.topic == settings.topic("dlq")]
            assert {dict(r.headers)["mesh-dlq-original-offset"].decode() for r in dlq_records} == {
                str(letter.original_offset) for letter in letters
            }
            assert assignments(events) == Counter({"N": 1})
            assert of_task(events, "N", TaskCompleted)
            assert agent.stop() == 0, agent.output()
        assert await committed_everything(settings, group)

    async def test_an_agent_without_its_topics_says_to_apply_them(
        self, broker_settings: Settings
    ) -> None:
        """An agent whose topics do not exist stops with one line that says what to do, and
        creates none (Tansu would create a topic when asked for its metadata): topics only ever
        come from ``mesh topics apply``, with their declared partitions."""
        env = {
            "MESH_BOOTSTRAP_SERVERS": broker_settings.bootstrap_servers,
            "MESH_TOPIC_PREFIX": broker_settings.topic_prefix,
            "MESH_REQUEST_TIMEOUT_MS": "2000",
        }
        args = ["agent", "run", "--kind", "command", "--id", "lonely", "--capability", "x"]
        run = await asyncio.to_thread(run_mesh, *args, env=env, timeout=120)
        line = assert_one_line_error(run)
        assert f"topic {broker_settings.topic('tasks.assigned')} does not exist" in line
        assert "does not exist; create it with 'mesh topics apply'" in line
        async with producer(broker_settings) as lookup:
            topics = (await lookup.client.fetch_all_metadata()).topics()
        assert not any(t.startswith(broker_settings.topic_prefix) for t in topics)
